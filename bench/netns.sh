# Sourced by the shell benchmarks in bench/: the network namespace each one
# runs its guest in.
#
# tap_namespace NS: creates network namespace NS with its loopback up and a
# TAP device tap0 at 10.77.0.1/24, for a guest at 10.77.0.2 with gateway
# 10.77.0.1. The caller removes it (`ip netns del NS`, in its EXIT trap).
tap_namespace() {
    local ns=$1
    ip netns add "$ns"
    ip netns exec "$ns" ip link set lo up
    ip netns exec "$ns" ip tuntap add dev tap0 mode tap
    ip netns exec "$ns" ip addr add 10.77.0.1/24 dev tap0
    ip netns exec "$ns" ip link set tap0 up
}
