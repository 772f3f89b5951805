//! The stack's socket table: smoltcp's `SocketSet` with a count of its
//! slots beside it, so the stack knows what the next socket costs before it
//! allocates anything, and can refuse a connection instead of letting the
//! allocator fail.
//!
//! smoltcp keeps every socket inline in one `Vec` of slots, reuses free
//! slots, and grows the `Vec` (doubling it, and copying) when none is free.
//! With a thousand connections that `Vec` is large, and its growth needs the
//! old and the new block at once. The table starts with room for as many
//! sockets as the heap could hold anyway ([`SocketTable::for_heap`]), so on
//! a heap of known size it normally never grows; when it must, the growth is
//! priced in [`SocketTable::growth_bytes`].
//!
//! Not here: which sockets to make or drop (the listeners in
//! [`crate::listen`], the streams in [`crate::tcp`]).

use alloc::vec::Vec;
use core::mem::size_of;

use smoltcp::iface::{SocketHandle, SocketSet, SocketStorage};
use smoltcp::socket::{AnySocket, Socket};

/// Bytes of one slot of the table (a whole smoltcp socket, inline).
pub(crate) const SLOT_BYTES: usize = size_of::<SocketStorage<'static>>();

/// Slots a table has room for when the heap's size is unknown; it grows
/// from there as needed.
const DEFAULT_SLOTS: usize = 16;

/// Most slots a table starts with room for, however large the heap.
const MAX_INITIAL_SLOTS: usize = 4096;

/// Whether `bytes` can be allocated and still leave `reserve_bytes` of the
/// heap free (always, when the heap's limit is unknown). The reserve is for
/// what allocates on a network path without asking first: the app's task
/// for a connection, smoltcp's fragment reassembly, the executor's queues.
pub(crate) fn memory_allows(bytes: usize, reserve_bytes: usize) -> bool {
    atoll_rt::memory::available_bytes() >= bytes.saturating_add(reserve_bytes)
}

/// smoltcp's socket set and the count of its slots.
pub(crate) struct SocketTable {
    set: SocketSet<'static>,
    /// Sockets in the set.
    live: usize,
    /// Slots the set's `Vec` holds, used or free (it never shrinks).
    slots: usize,
    /// Slots it has room for before it must grow.
    capacity: usize,
}

impl SocketTable {
    /// A table with room for the sockets of as many connections, each
    /// taking about `bytes_per_connection` besides its slot, as fit in the
    /// heap's limit (or [`DEFAULT_SLOTS`] if the limit is unknown).
    pub(crate) fn for_heap(bytes_per_connection: usize) -> SocketTable {
        let capacity = match atoll_rt::memory::usage().limit_bytes {
            Some(limit) => (limit / (bytes_per_connection + SLOT_BYTES)).clamp(DEFAULT_SLOTS, MAX_INITIAL_SLOTS),
            None => DEFAULT_SLOTS,
        };
        SocketTable::with_capacity(capacity)
    }

    /// An empty table with room for `capacity` sockets before it grows.
    pub(crate) fn with_capacity(capacity: usize) -> SocketTable {
        SocketTable {
            set: SocketSet::new(Vec::with_capacity(capacity)),
            live: 0,
            slots: 0,
            capacity,
        }
    }

    /// Adds a socket (see smoltcp's `SocketSet::add`).
    pub(crate) fn add<T: AnySocket<'static>>(&mut self, socket: T) -> SocketHandle {
        if self.live == self.slots {
            // smoltcp pushes a new slot: the Vec grows as `Vec::push` does.
            if self.slots == self.capacity {
                self.capacity = grown_capacity(self.capacity);
            }
            self.slots += 1;
        }
        self.live += 1;
        self.set.add(socket)
    }

    /// Removes a socket (see smoltcp's `SocketSet::remove`).
    pub(crate) fn remove(&mut self, handle: SocketHandle) {
        drop(self.take(handle));
    }

    /// Removes a socket and gives it back, to move it to another table.
    pub(crate) fn take(&mut self, handle: SocketHandle) -> Socket<'static> {
        self.live = self.live.saturating_sub(1);
        self.set.remove(handle)
    }

    /// Whether the table holds no socket.
    pub(crate) fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Bytes the next [`add`](Self::add) allocates for the table itself: 0
    /// while a slot is free, else the whole grown `Vec` (the old one is
    /// freed only after the copy).
    pub(crate) fn growth_bytes(&self) -> usize {
        if self.live < self.slots || self.slots < self.capacity {
            0
        } else {
            grown_capacity(self.capacity).saturating_mul(SLOT_BYTES)
        }
    }

    /// Sockets in the table.
    #[cfg(test)]
    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// See smoltcp's `SocketSet::get_mut`.
    pub(crate) fn get_mut<T: AnySocket<'static>>(&mut self, handle: SocketHandle) -> &mut T {
        self.set.get_mut(handle)
    }

    /// The set itself, for the interface's polls.
    pub(crate) fn set(&self) -> &SocketSet<'static> {
        &self.set
    }

    /// The set itself, for the interface's polls.
    pub(crate) fn set_mut(&mut self) -> &mut SocketSet<'static> {
        &mut self.set
    }
}

/// The capacity `Vec::push` grows a full `Vec` of slots to.
fn grown_capacity(capacity: usize) -> usize {
    // `RawVec` doubles, with a minimum of 4 elements of up to 1 KiB and 1
    // of anything larger.
    let minimum = if SLOT_BYTES <= 1024 { 4 } else { 1 };
    capacity.saturating_mul(2).max(capacity + 1).max(minimum)
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::socket::udp;

    fn udp_socket() -> udp::Socket<'static> {
        let buffer = || udp::PacketBuffer::new(alloc::vec![udp::PacketMetadata::EMPTY; 1], alloc::vec![0; 8]);
        udp::Socket::new(buffer(), buffer())
    }

    #[test]
    fn growth_is_priced_only_when_no_slot_is_free() {
        atoll_rt::platform::sim::set_memory(0, None);
        let mut table = SocketTable::for_heap(1000);
        assert_eq!(table.capacity, DEFAULT_SLOTS);
        let handles: Vec<_> = (0..DEFAULT_SLOTS).map(|_| table.add(udp_socket())).collect();
        assert_eq!(table.growth_bytes(), grown_capacity(DEFAULT_SLOTS) * SLOT_BYTES);
        table.remove(handles[3]);
        assert_eq!(table.growth_bytes(), 0, "the freed slot is reused");
        table.add(udp_socket());
        table.add(udp_socket());
        assert_eq!(table.capacity, grown_capacity(DEFAULT_SLOTS));
        assert_eq!(table.live(), DEFAULT_SLOTS + 1);
        assert_eq!(table.growth_bytes(), 0);
    }

    #[test]
    fn a_known_heap_sizes_the_table() {
        atoll_rt::platform::sim::set_memory(0, Some(100 * (1000 + SLOT_BYTES)));
        assert_eq!(SocketTable::for_heap(1000).capacity, 100);
        atoll_rt::platform::sim::set_memory(0, Some(10));
        assert_eq!(SocketTable::for_heap(1000).capacity, DEFAULT_SLOTS);
        atoll_rt::platform::sim::set_memory(0, None);
    }
}
