//! Host tests: stacks wired back to back by pipes (or a stack and a test
//! speaking raw frames), run by the runtime's executor on its simulated
//! platform, whose clock jumps to the next deadline whenever everything
//! waits.

extern crate std;

use alloc::format;
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::future::{poll_fn, Future};
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use core::pin::pin;
use core::task::Poll;
use core::time::Duration;

use atoll_rt::time::{sleep, timeout};
use atoll_rt::{block_on, spawn};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv4Packet,
    Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr,
};

use crate::phy::{lossy_pipe, pipe, Faults, PipeDevice};
use crate::*;

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

fn mac(n: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, n]
}

fn static_ip(address: Ipv4Addr) -> Ipv4Config {
    Ipv4Config::Static {
        address: Ipv4Cidr::new(address, 24),
        gateway: None,
    }
}

/// A server stack (10.0.0.1) and a client stack (10.0.0.2) on one cable.
fn two_stacks(tcp: TcpConfig) -> (Stack, Stack) {
    let (a, b) = pipe();
    let server = Stack::with_device(a, mac(1), static_ip(SERVER_IP), tcp);
    let client = Stack::with_device(b, mac(2), static_ip(CLIENT_IP), tcp);
    (server, client)
}

/// Runs `main` on the executor (the simulated platform) and returns its
/// output.
fn run<T: 'static>(main: impl Future<Output = T> + 'static) -> T {
    let output = Rc::new(RefCell::new(None));
    let slot = Rc::clone(&output);
    let status = block_on(async move {
        *slot.borrow_mut() = Some(main.await);
    });
    assert_eq!(status, 0);
    let value = output.borrow_mut().take();
    value.expect("main finished")
}

fn socket_count(stack: &Stack) -> usize {
    stack.inner.borrow().socket_count()
}

/// Runs two futures of one task concurrently; returns both outputs.
async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let (mut a, mut b) = (pin!(a), pin!(b));
    let (mut out_a, mut out_b) = (None, None);
    poll_fn(|cx| {
        if out_a.is_none() {
            if let Poll::Ready(out) = a.as_mut().poll(cx) {
                out_a = Some(out);
            }
        }
        if out_b.is_none() {
            if let Poll::Ready(out) = b.as_mut().poll(cx) {
                out_b = Some(out);
            }
        }
        if out_a.is_some() && out_b.is_some() {
            Poll::Ready((out_a.take().unwrap(), out_b.take().unwrap()))
        } else {
            Poll::Pending
        }
    })
    .await
}

/// Reads until the end of the stream.
async fn read_to_end(reader: &mut impl embedded_io_async::Read<Error = Error>) -> Result<Vec<u8>, Error> {
    let mut data = Vec::new();
    let mut buf = [0; 1000];
    loop {
        match reader.read(&mut buf).await? {
            0 => return Ok(data),
            n => data.extend_from_slice(&buf[..n]),
        }
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

#[test]
fn connect_accept_and_talk() {
    let (server, client) = two_stacks(TcpConfig::DEFAULT);
    let listener = TcpListener::bind(&server, 80).unwrap();
    let status = block_on(async move {
        let served = spawn(async move {
            let mut stream = listener.accept().await;
            let peer = stream.peer_addr().unwrap();
            let mut buf = [0; 16];
            let n = stream.read(&mut buf).await.unwrap();
            stream.write_all(b"hello, ").await.unwrap();
            stream.write_all(&buf[..n]).await.unwrap();
            stream.flush().await.unwrap();
            peer
        });
        let mut stream = TcpStream::connect(&client, (SERVER_IP, 80)).await.unwrap();
        assert_eq!(stream.peer_addr(), Some(IpEndpoint::new(SERVER_IP.into(), 80)));
        stream.write_all(b"atoll").await.unwrap();
        let mut buf = [0; 32];
        let mut got = Vec::new();
        while got.len() < 12 {
            let n = stream.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"hello, atoll");
        let peer = served.await;
        assert_eq!(peer.addr, IpAddress::from(CLIENT_IP));
        assert_eq!(Some(peer), stream.local_addr());
        0u32
    });
    assert_eq!(status, 0);
}

#[test]
fn echo_of_one_mib_through_small_buffers_loses_nothing() {
    let small = TcpConfig {
        rx_buffer_bytes: 1024,
        tx_buffer_bytes: 1536,
        ..TcpConfig::DEFAULT
    };
    let (server, client) = two_stacks(small);
    let listener = TcpListener::bind(&server, 7).unwrap();
    let sent = pattern(1024 * 1024);
    let expected = sent.clone();
    let echoed = run(async move {
        let _echo = spawn(async move {
            let mut stream = listener.accept().await;
            let mut buf = [0; 700];
            loop {
                let n = stream.read(&mut buf).await.unwrap();
                if n == 0 {
                    break; // the client shut down: close our side too
                }
                stream.write_all(&buf[..n]).await.unwrap();
            }
        });
        let mut stream = TcpStream::connect(&client, (SERVER_IP, 7)).await.unwrap();
        let (mut reader, mut writer) = stream.split();
        let (written, echoed) = join(
            async {
                // Much more than both stacks' buffers hold: every write
                // beyond them has to wait for the echo to be read.
                for chunk in sent.chunks(10_000) {
                    writer.write_all(chunk).await?;
                }
                writer.shutdown();
                Ok::<_, Error>(())
            },
            read_to_end(&mut reader),
        )
        .await;
        written.unwrap();
        echoed.unwrap()
    });
    assert_eq!(echoed.len(), expected.len());
    assert!(echoed == expected, "the echo differs from what was sent");
}

#[test]
fn tcp_delivers_every_byte_over_a_link_that_drops_and_corrupts_frames() {
    // 5 % of frames lost and 2 % with a flipped bit, in both directions:
    // retransmission and checksums must hide all of it.
    let faults = Faults {
        drop_per_mille: 50,
        corrupt_per_mille: 20,
        seed: 0x5EED,
    };
    let (a, b) = lossy_pipe(faults);
    let (a_probe, b_probe) = (a.clone(), b.clone());
    let server = Stack::with_device(a, mac(1), static_ip(SERVER_IP), TcpConfig::DEFAULT);
    let client = Stack::with_device(b, mac(2), static_ip(CLIENT_IP), TcpConfig::DEFAULT);
    let listener = TcpListener::bind(&server, 7).unwrap();
    let sent = pattern(256 * 1024);
    let expected = sent.clone();
    let received = run(async move {
        let receiver = spawn(async move {
            let mut stream = listener.accept().await;
            read_to_end(&mut stream).await
        });
        let mut stream = TcpStream::connect(&client, (SERVER_IP, 7)).await.unwrap();
        stream.write_all(&sent).await.unwrap();
        stream.shutdown();
        let received = receiver.await.unwrap();
        // Keep the sender's socket until the receiver has everything.
        drop(stream);
        received
    });
    assert!(
        received == expected,
        "{} of {} bytes arrived, or in the wrong order",
        received.len(),
        expected.len()
    );
    // (dropped, corrupted) frames of each side: the link really was bad.
    let (server_faults, client_faults) = (a_probe.faults_injected_count(), b_probe.faults_injected_count());
    assert!(
        server_faults.0 > 0 && client_faults.0 > 0,
        "no frames dropped: {server_faults:?} {client_faults:?}"
    );
    assert!(client_faults.1 > 0, "no frames corrupted: {client_faults:?}");
}

#[test]
fn a_peer_still_sending_to_a_closed_stream_finishes_and_reads_the_answer() {
    // The server answers, then closes without reading the rest, as an HTTP
    // server does after refusing an oversized request. The client, still
    // writing far more than the buffers hold, must finish, read the answer
    // and the end of the stream well before the 30 s linger time.
    let (server, client) = two_stacks(TcpConfig::DEFAULT);
    let listener = TcpListener::bind(&server, 80).unwrap();
    let (answer, took) = run(async move {
        let _server = spawn(async move {
            let mut stream = listener.accept().await;
            let mut head = [0; 100];
            let _ = stream.read(&mut head).await.unwrap();
            stream.write_all(b"HTTP/1.1 431 Too Large\r\n\r\n").await.unwrap();
            stream.close();
        });
        let start = atoll_rt::time::Instant::now();
        let mut stream = TcpStream::connect(&client, (SERVER_IP, 80)).await.unwrap();
        let (mut reader, mut writer) = stream.split();
        let (written, answer) = join(
            async {
                writer.write_all(&pattern(200 * 1024)).await?;
                writer.shutdown();
                Ok::<_, Error>(())
            },
            read_to_end(&mut reader),
        )
        .await;
        written.unwrap();
        (answer.unwrap(), start.elapsed())
    });
    assert_eq!(answer, b"HTTP/1.1 431 Too Large\r\n\r\n");
    assert!(took < Duration::from_secs(5), "the client was stuck for {took:?}");
}

#[test]
fn graceful_close_both_ways_and_sockets_are_reclaimed() {
    let (server, client) = two_stacks(TcpConfig::DEFAULT);
    let listener = TcpListener::bind(&server, 80).unwrap();
    let listening = socket_count(&server);
    assert_eq!(listening, TcpConfig::DEFAULT.listen_sockets);
    let (server2, client2) = (server.clone(), client.clone());
    block_on(async move {
        let served = spawn(async move {
            let mut stream = listener.accept().await;
            // The client shuts down first: we read its data, then the end.
            let request = read_to_end(&mut stream).await.unwrap();
            // Our side is still open for writing.
            stream.write_all(b"bye").await.unwrap();
            stream.close();
            (request, listener)
        });
        let mut stream = TcpStream::connect(&client2, (SERVER_IP, 80)).await.unwrap();
        stream.write_all(b"last words").await.unwrap();
        stream.shutdown();
        assert_eq!(stream.write(b"more").await, Err(Error::Shutdown));
        assert_eq!(read_to_end(&mut stream).await.unwrap(), b"bye");
        drop(stream);
        let (request, listener) = served.await;
        assert_eq!(request, b"last words");
        // Give the FINs and ACKs time to cross (well under the linger time).
        sleep(Duration::from_millis(500)).await;
        assert_eq!(socket_count(&client2), 0, "the client's socket was reclaimed");
        assert_eq!(socket_count(&server2), listening, "only the listening sockets remain");
        drop(listener);
        sleep(Duration::from_millis(10)).await;
        assert_eq!(socket_count(&server2), 0, "a dropped listener leaves no socket");
    });
}

#[test]
fn a_peer_that_never_closes_is_reset_after_the_linger_time() {
    let (server, client) = two_stacks(TcpConfig::DEFAULT);
    let listener = TcpListener::bind(&server, 80).unwrap();
    let server2 = server.clone();
    block_on(async move {
        let mut stream = TcpStream::connect(&client, (SERVER_IP, 80)).await.unwrap();
        let accepted = listener.accept().await;
        drop(accepted); // the server closes; the client never does
        sleep(Duration::from_secs(1)).await;
        assert_eq!(socket_count(&server2), TcpConfig::DEFAULT.listen_sockets + 1);
        assert_eq!(read_to_end(&mut stream).await.unwrap(), b"", "the client saw the FIN");
        sleep(TcpConfig::DEFAULT.linger).await;
        assert_eq!(socket_count(&server2), TcpConfig::DEFAULT.listen_sockets);
        // The reset reached the client, whose half-open socket is now dead.
        assert_eq!(stream.write(b"late").await, Err(Error::ConnectionReset));
    });
}

#[test]
fn three_hundred_concurrent_connections() {
    const CONNECTIONS: usize = 300;
    let (server, client) = two_stacks(TcpConfig::DEFAULT);
    let listener = TcpListener::bind(&server, 80).unwrap();
    let open = Rc::new(Cell::new(0usize));
    let most_open = Rc::new(Cell::new(0usize));
    let (server2, client2) = (server.clone(), client.clone());
    let (open2, most2) = (open.clone(), most_open.clone());
    block_on(async move {
        let _acceptor = spawn(async move {
            loop {
                let mut stream = listener.accept().await;
                let (open, most) = (open2.clone(), most2.clone());
                spawn(async move {
                    open.set(open.get() + 1);
                    most.set(most.get().max(open.get()));
                    let mut buf = [0; 16];
                    let n = stream.read(&mut buf).await.unwrap();
                    // Hold every connection open until all have been made.
                    sleep(Duration::from_millis(100)).await;
                    stream.write_all(&buf[..n]).await.unwrap();
                    open.set(open.get() - 1);
                })
                .is_finished();
            }
        });
        let clients: Vec<_> = (0..CONNECTIONS)
            .map(|i| {
                let client = client2.clone();
                spawn(async move {
                    let mut stream = TcpStream::connect(&client, (SERVER_IP, 80)).await?;
                    stream.write_all(format!("{i}").as_bytes()).await?;
                    let reply = read_to_end(&mut stream).await?;
                    Ok::<_, Error>(reply == format!("{i}").as_bytes())
                })
            })
            .collect();
        let mut correct = 0;
        for handle in clients {
            if handle.await == Ok(true) {
                correct += 1;
            }
        }
        assert_eq!(correct, CONNECTIONS, "every connection got its own answer");
        sleep(Duration::from_secs(1)).await;
        assert_eq!(socket_count(&client2), 0);
        assert_eq!(socket_count(&server2), TcpConfig::DEFAULT.listen_sockets);
    });
    assert_eq!(most_open.get(), CONNECTIONS, "all were open at once");
}

#[test]
fn connecting_to_a_closed_port_is_refused() {
    let (_server, client) = two_stacks(TcpConfig::DEFAULT);
    let result = run(async move {
        match TcpStream::connect(&client, (SERVER_IP, 81)).await {
            Ok(_) => Ok(()),
            Err(error) => Err(error),
        }
    });
    assert_eq!(format!("{result:?}"), "Err(ConnectionRefused)");
}

#[test]
fn binding_a_port_twice_fails() {
    let (server, _client) = two_stacks(TcpConfig::DEFAULT);
    let _listener = TcpListener::bind(&server, 80).unwrap();
    assert_eq!(TcpListener::bind(&server, 80).err(), Some(Error::AddrInUse));
    assert_eq!(TcpListener::bind(&server, 0).err(), Some(Error::InvalidPort));
    let _udp = UdpSocket::bind(&server, 53).unwrap();
    assert_eq!(UdpSocket::bind(&server, 53).err(), Some(Error::AddrInUse));
}

#[test]
fn udp_round_trip() {
    let (server, client) = two_stacks(TcpConfig::DEFAULT);
    let (received, reply) = run(async move {
        let echo = UdpSocket::bind(&server, 7).unwrap();
        let seen = Rc::new(RefCell::new(Vec::new()));
        let seen_by_echo = Rc::clone(&seen);
        let _echo = spawn(async move {
            let mut buf = [0; 64];
            loop {
                let (n, from) = echo.recv_from(&mut buf).await.unwrap();
                seen_by_echo.borrow_mut().push((buf[..n].to_vec(), from));
                echo.send_to(&buf[..n], from).await.unwrap();
            }
        });
        let socket = UdpSocket::bind(&client, 0).unwrap();
        assert!(socket.port() >= 49152);
        let too_big = vec![0; udp::UDP_BUFFER_BYTES + 1];
        assert_eq!(
            socket.send_to(&too_big, (SERVER_IP, 7)).await,
            Err(Error::PacketTooLarge)
        );
        let mut buf = [0; 64];
        let mut attempts = 0;
        let (n, from) = loop {
            // Like any UDP client, retry: the first datagram to a peer not
            // yet in the ARP cache is dropped while the stack asks for it.
            attempts += 1;
            socket.send_to(b"ping over udp", (SERVER_IP, 7)).await.unwrap();
            if let Ok(received) = timeout(Duration::from_millis(100), socket.recv_from(&mut buf)).await {
                break received.unwrap();
            }
        };
        assert!(attempts <= 3, "datagrams are lost only while ARP resolves");
        assert_eq!(from, IpEndpoint::new(SERVER_IP.into(), 7));
        let (received, seen_from) = seen.borrow()[0].clone();
        assert_eq!(seen_from, IpEndpoint::new(CLIENT_IP.into(), socket.port()));
        (received, buf[..n].to_vec())
    });
    assert_eq!(received, b"ping over udp");
    assert_eq!(reply, b"ping over udp");
}

/// An Ethernet frame carrying `payload` of `ethertype`.
fn ethernet_frame(dst: [u8; 6], ethertype: EthernetProtocol, payload: &[u8]) -> Vec<u8> {
    let repr = EthernetRepr {
        src_addr: EthernetAddress(mac(9)),
        dst_addr: EthernetAddress(dst),
        ethertype,
    };
    let mut bytes = vec![0; repr.buffer_len() + payload.len()];
    let mut frame = EthernetFrame::new_unchecked(&mut bytes);
    repr.emit(&mut frame);
    frame.payload_mut().copy_from_slice(payload);
    bytes
}

/// Waits (on simulated time) for the next frame the stack sends.
async fn next_frame(wire: &PipeDevice) -> Vec<u8> {
    for _ in 0..100 {
        if let Some(frame) = wire.recv_frame() {
            return frame;
        }
        sleep(Duration::from_millis(1)).await;
    }
    panic!("the stack sent nothing");
}

#[test]
fn answers_arp_and_ping_by_itself() {
    let (stack_end, wire) = pipe();
    let _stack = Stack::with_device(stack_end, mac(1), static_ip(SERVER_IP), TcpConfig::DEFAULT);
    let tester_ip = Ipv4Addr::new(10, 0, 0, 9);
    block_on(async move {
        // Who has 10.0.0.1? Tell 10.0.0.9.
        let request = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: EthernetAddress(mac(9)),
            source_protocol_addr: tester_ip,
            target_hardware_addr: EthernetAddress([0; 6]),
            target_protocol_addr: SERVER_IP,
        };
        let mut arp = vec![0; request.buffer_len()];
        request.emit(&mut ArpPacket::new_unchecked(&mut arp));
        assert!(wire.send_frame(ethernet_frame([0xff; 6], EthernetProtocol::Arp, &arp)));
        let reply = next_frame(&wire).await;
        let frame = EthernetFrame::new_checked(&reply).unwrap();
        assert_eq!(frame.ethertype(), EthernetProtocol::Arp);
        assert_eq!(frame.dst_addr(), EthernetAddress(mac(9)));
        let arp = ArpRepr::parse(&ArpPacket::new_checked(frame.payload()).unwrap()).unwrap();
        assert_eq!(
            arp,
            ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Reply,
                source_hardware_addr: EthernetAddress(mac(1)),
                source_protocol_addr: SERVER_IP,
                target_hardware_addr: EthernetAddress(mac(9)),
                target_protocol_addr: tester_ip,
            }
        );

        // Ping 10.0.0.1.
        let checksums = ChecksumCapabilities::default();
        let echo = Icmpv4Repr::EchoRequest {
            ident: 0x1234,
            seq_no: 7,
            data: b"are you there?",
        };
        let ip = Ipv4Repr {
            src_addr: tester_ip,
            dst_addr: SERVER_IP,
            next_header: IpProtocol::Icmp,
            payload_len: echo.buffer_len(),
            hop_limit: 64,
        };
        let mut packet = vec![0; ip.buffer_len() + echo.buffer_len()];
        let mut ipv4 = Ipv4Packet::new_unchecked(&mut packet);
        ip.emit(&mut ipv4, &checksums);
        echo.emit(&mut Icmpv4Packet::new_unchecked(ipv4.payload_mut()), &checksums);
        assert!(wire.send_frame(ethernet_frame(mac(1), EthernetProtocol::Ipv4, &packet)));
        let reply = next_frame(&wire).await;
        let frame = EthernetFrame::new_checked(&reply).unwrap();
        assert_eq!(frame.ethertype(), EthernetProtocol::Ipv4);
        let ipv4 = Ipv4Packet::new_checked(frame.payload()).unwrap();
        let ip = Ipv4Repr::parse(&ipv4, &checksums).unwrap();
        assert_eq!((ip.src_addr, ip.dst_addr), (SERVER_IP, tester_ip));
        let icmp = Icmpv4Repr::parse(&Icmpv4Packet::new_checked(ipv4.payload()).unwrap(), &checksums).unwrap();
        assert_eq!(
            icmp,
            Icmpv4Repr::EchoReply {
                ident: 0x1234,
                seq_no: 7,
                data: b"are you there?",
            }
        );
    });
}

#[test]
fn stack_new_names_the_missing_device() {
    // The simulated machine has no devices.
    let error = Stack::new("service").unwrap_err();
    assert_eq!(
        format!("{error}"),
        "no network device named \"service\": declare it with #[atoll::main(net = \"service\")] \
         and attach it with --net:service=TAP"
    ); // What `main` returning it prints (`Error: {err:?}`) is the same message.
    assert_eq!(format!("{error:?}"), format!("{error}"));
}

#[test]
fn wait_configured_returns_a_static_address_at_once() {
    let (a, _b) = pipe();
    let stack = Stack::with_device(
        a,
        mac(1),
        Ipv4Config::Static {
            address: Ipv4Cidr::new(SERVER_IP, 24),
            gateway: Some(Ipv4Addr::new(10, 0, 0, 254)),
        },
        TcpConfig::DEFAULT,
    );
    let cidr = run(async move {
        let cidr = stack.wait_configured().await;
        assert_eq!(stack.ipv4_gateway(), Some(Ipv4Addr::new(10, 0, 0, 254)));
        assert_eq!(stack.mac(), mac(1));
        cidr
    });
    assert_eq!(format!("{cidr}"), "10.0.0.1/24");
}

#[test]
fn a_busy_pipe_holds_frames_back_instead_of_dropping_them() {
    let (a, b) = crate::phy::pipe_with(2, 1500);
    assert!(a.send_frame(vec![1; 60]));
    assert!(a.send_frame(vec![2; 60]));
    assert!(!a.send_frame(vec![3; 60]), "a full queue refuses a third frame");
    assert_eq!(b.pending_frames(), 2);
    assert_eq!(b.recv_frame(), Some(vec![1; 60]));
    assert_eq!(a.frames_sent_count(), 2);
}

/// A DHCP server of the fewest lines: offers and acknowledges `10.0.0.42/24`
/// with gateway `10.0.0.1` and DNS servers `dns_servers` to whoever asks on
/// `wire`.
async fn tiny_dhcp_server(wire: PipeDevice, dns_servers: &'static [Ipv4Addr]) {
    use smoltcp::wire::{DhcpMessageType, DhcpPacket, DhcpRepr, UdpPacket, UdpRepr};
    let checksums = ChecksumCapabilities::default();
    let server_ip = Ipv4Addr::new(10, 0, 0, 1);
    loop {
        let Some(frame) = wire.recv_frame() else {
            sleep(Duration::from_millis(1)).await;
            continue;
        };
        let Ok(ethernet) = EthernetFrame::new_checked(&frame[..]) else {
            continue;
        };
        let Ok(ipv4) = Ipv4Packet::new_checked(ethernet.payload()) else {
            continue;
        };
        if ipv4.next_header() != IpProtocol::Udp {
            continue;
        }
        let Ok(udp) = UdpPacket::new_checked(ipv4.payload()) else {
            continue;
        };
        if udp.dst_port() != 67 {
            continue;
        }
        let Ok(dhcp) = DhcpPacket::new_checked(udp.payload()) else {
            continue;
        };
        let Ok(request) = DhcpRepr::parse(&dhcp) else { continue };
        let message_type = match request.message_type {
            DhcpMessageType::Discover => DhcpMessageType::Offer,
            DhcpMessageType::Request => DhcpMessageType::Ack,
            _ => continue,
        };
        let reply = DhcpRepr {
            message_type,
            transaction_id: request.transaction_id,
            secs: 0,
            client_hardware_address: request.client_hardware_address,
            client_ip: Ipv4Addr::UNSPECIFIED,
            your_ip: Ipv4Addr::new(10, 0, 0, 42),
            server_ip,
            router: Some(server_ip),
            subnet_mask: Some(Ipv4Addr::new(255, 255, 255, 0)),
            relay_agent_ip: Ipv4Addr::UNSPECIFIED,
            broadcast: false,
            requested_ip: None,
            client_identifier: None,
            server_identifier: Some(server_ip),
            parameter_request_list: None,
            dns_servers: (!dns_servers.is_empty()).then(|| dns_servers.iter().copied().collect()),
            max_size: None,
            lease_duration: Some(3600),
            renew_duration: None,
            rebind_duration: None,
            additional_options: &[],
        };
        let mut dhcp_bytes = vec![0; reply.buffer_len()];
        reply.emit(&mut DhcpPacket::new_unchecked(&mut dhcp_bytes)).unwrap();
        let udp_repr = UdpRepr {
            src_port: 67,
            dst_port: 68,
        };
        let ip = Ipv4Repr {
            src_addr: server_ip,
            dst_addr: Ipv4Addr::BROADCAST,
            next_header: IpProtocol::Udp,
            payload_len: udp_repr.header_len() + dhcp_bytes.len(),
            hop_limit: 64,
        };
        let mut packet = vec![0; ip.buffer_len() + ip.payload_len];
        let mut ipv4 = Ipv4Packet::new_unchecked(&mut packet);
        ip.emit(&mut ipv4, &checksums);
        udp_repr.emit(
            &mut UdpPacket::new_unchecked(ipv4.payload_mut()),
            &server_ip.into(),
            &Ipv4Addr::BROADCAST.into(),
            dhcp_bytes.len(),
            |payload| payload.copy_from_slice(&dhcp_bytes),
            &checksums,
        );
        let client_mac = request.client_hardware_address.0;
        assert!(wire.send_frame(ethernet_frame(client_mac, EthernetProtocol::Ipv4, &packet)));
    }
}

#[test]
fn dhcp_configures_address_and_gateway() {
    let (stack_end, wire) = pipe();
    let stack = Stack::with_device(stack_end, mac(1), Ipv4Config::Dhcp, TcpConfig::DEFAULT);
    let (cidr, gateway) = run(async move {
        assert_eq!(stack.ipv4_cidr(), None, "no address before the lease");
        let _server = spawn(tiny_dhcp_server(wire, &[]));
        let cidr = stack.wait_configured().await;
        (cidr, stack.ipv4_gateway())
    });
    assert_eq!(format!("{cidr}"), "10.0.0.42/24");
    assert_eq!(gateway, Some(Ipv4Addr::new(10, 0, 0, 1)));
}

#[test]
fn a_response_longer_than_one_segment_does_not_wait_for_a_delayed_ack() {
    // 2000 bytes make a full segment and a short one. With Nagle's
    // algorithm the short one would wait for the ACK of the full one, which
    // the peer delays (10 ms in smoltcp, 40 ms in Linux for one segment).
    let (server, client) = two_stacks(TcpConfig::DEFAULT);
    let listener = TcpListener::bind(&server, 80).unwrap();
    let response = pattern(2000);
    let expected = response.clone();
    let elapsed_ms = run(async move {
        let mut stream = TcpStream::connect(&client, (SERVER_IP, 80)).await.unwrap();
        let mut accepted = listener.accept().await;
        // Let the handshake's ACKs settle before timing.
        sleep(Duration::from_millis(100)).await;
        let start = atoll_rt::time::Instant::now();
        accepted.write_all(&response).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0; 512];
        while got.len() < expected.len() {
            let n = stream.read(&mut buf).await.unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        assert!(got == expected);
        start.elapsed().as_millis()
    });
    assert!(elapsed_ms < 10, "took {elapsed_ms} ms");
}

#[test]
fn dhcp_gives_the_dns_servers_unless_they_were_set() {
    const DHCP_DNS: &[Ipv4Addr] = &[Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 3)];
    let leased = |fixed: Option<Ipv4Addr>| {
        let (stack_end, wire) = pipe();
        let stack = Stack::with_device(stack_end, mac(1), Ipv4Config::Dhcp, TcpConfig::DEFAULT);
        if let Some(server) = fixed {
            stack.set_dns_servers(&[IpAddr::V4(server)]);
        }
        run(async move {
            assert_eq!(
                stack.dns_servers(),
                fixed.into_iter().collect::<Vec<_>>(),
                "before the lease"
            );
            let _server = spawn(tiny_dhcp_server(wire, DHCP_DNS));
            stack.wait_configured().await;
            stack.dns_servers()
        })
    };
    let v4 = |addresses: &[Ipv4Addr]| addresses.iter().copied().map(IpAddr::V4).collect::<Vec<_>>();
    assert_eq!(leased(None), v4(DHCP_DNS));
    // As `--dns=10.0.0.53` does: it wins over the lease.
    let fixed = Ipv4Addr::new(10, 0, 0, 53);
    assert_eq!(leased(Some(fixed)), v4(&[fixed]));
}

/// An IPv6 address of [`DNS_RECORDS`].
const DUAL_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x80);

/// The names [`tiny_dns_server`] knows.
const DNS_RECORDS: &[(&str, &[IpAddr])] = &[
    ("slides.atoll.test", &[IpAddr::V4(Ipv4Addr::new(10, 78, 0, 1))]),
    (
        "two.atoll.test",
        &[
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)),
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 8)),
        ],
    ),
    ("v6only.atoll.test", &[IpAddr::V6(DUAL_V6)]),
    (
        "dual.atoll.test",
        &[IpAddr::V6(DUAL_V6), IpAddr::V4(Ipv4Addr::new(10, 78, 0, 2))],
    ),
];

/// The answer of a DNS server knowing [`DNS_RECORDS`] to `query`, in wire
/// bytes: the query with the response flags, then one A or AAAA record per
/// address of the family asked for (none, with NXDOMAIN, for an unknown
/// name; none, without an error, for a known name with no address of that
/// family).
fn dns_answer(query: &[u8]) -> Vec<u8> {
    use smoltcp::wire::{DnsPacket, DnsQueryType, DnsQuestion};
    let packet = DnsPacket::new_checked(query).expect("a DNS header");
    let (rest, question) = DnsQuestion::parse(packet.payload()).expect("a question");
    assert!(rest.is_empty(), "one question and nothing else");
    assert!(matches!(question.type_, DnsQueryType::A | DnsQueryType::Aaaa));
    let labels: Vec<&[u8]> = packet
        .parse_name(question.name)
        .collect::<Result<_, _>>()
        .expect("a name");
    let name = labels
        .iter()
        .map(|label| core::str::from_utf8(label).expect("ASCII"))
        .collect::<Vec<_>>()
        .join(".");
    let known = DNS_RECORDS.iter().find(|(known, _)| *known == name);
    let records: Vec<Vec<u8>> = known
        .map_or(&[][..], |(_, addresses)| addresses)
        .iter()
        .filter_map(|address| match (address, question.type_) {
            (IpAddr::V4(a), DnsQueryType::A) => Some(a.octets().to_vec()),
            (IpAddr::V6(a), DnsQueryType::Aaaa) => Some(a.octets().to_vec()),
            _ => None,
        })
        .collect();
    let mut answer = query.to_vec();
    // QR, opcode 0, RD; RA, and RCODE 0 (no error) or 3 (NXDOMAIN).
    answer[2] = 0x81;
    answer[3] = if known.is_none() { 0x83 } else { 0x80 };
    answer[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
    let kind = if question.type_ == DnsQueryType::A { 1 } else { 28 };
    for record in records {
        // The name as a pointer to the question's (offset 12), type A or
        // AAAA, class IN, TTL 60 s, the address's length and bytes.
        answer.extend_from_slice(&[0xc0, 12, 0, kind, 0, 1, 0, 0, 0, 60, 0, record.len() as u8]);
        answer.extend_from_slice(&record);
    }
    answer
}

/// A DNS server on port 53 of `stack` answering from [`DNS_RECORDS`].
async fn tiny_dns_server(stack: Stack) {
    let socket = UdpSocket::bind(&stack, 53).unwrap();
    let mut query = [0; 512];
    loop {
        let (n, client) = socket.recv_from(&mut query).await.unwrap();
        socket.send_to(&dns_answer(&query[..n]), client).await.unwrap();
    }
}

#[test]
fn names_resolve_to_the_servers_answers() {
    let (server, client) = two_stacks(TcpConfig::DEFAULT);
    client.set_dns_servers(&[IpAddr::V4(SERVER_IP)]);
    let (one, two, trailing_dot, v6only, dual) = run(async move {
        let _dns = spawn(tiny_dns_server(server));
        (
            client.resolve("slides.atoll.test").await,
            client.resolve_all("two.atoll.test").await,
            client.resolve("slides.atoll.test.").await,
            client.resolve_all("v6only.atoll.test").await,
            client.resolve_all("dual.atoll.test").await,
        )
    });
    assert_eq!(one, Ok(IpAddr::V4(Ipv4Addr::new(10, 78, 0, 1))));
    assert_eq!(
        two,
        Ok(vec![
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)),
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 8))
        ])
    );
    assert_eq!(trailing_dot, one);
    assert_eq!(v6only, Ok(vec![IpAddr::V6(DUAL_V6)]));
    // Without a global IPv6 address the client could not reach the IPv6
    // one: IPv4 first.
    assert_eq!(
        dual,
        Ok(vec![IpAddr::V4(Ipv4Addr::new(10, 78, 0, 2)), IpAddr::V6(DUAL_V6)])
    );
}

#[test]
fn an_unknown_name_is_not_found_at_once() {
    let (server, client) = two_stacks(TcpConfig::DEFAULT);
    client.set_dns_servers(&[IpAddr::V4(SERVER_IP)]);
    let (missing, took_ms) = run(async move {
        let _dns = spawn(tiny_dns_server(server));
        let start = atoll_rt::time::Instant::now();
        let missing = client.resolve("missing.atoll.test").await;
        (missing, start.elapsed().as_millis())
    });
    assert_eq!(missing, Err(DnsError::NotFound));
    // NXDOMAIN ends the query: no retransmission, no timeout.
    assert!(took_ms < 1000, "took {took_ms} ms");
}

#[test]
fn without_servers_names_fail_and_literal_addresses_still_resolve() {
    let (_server, client) = two_stacks(TcpConfig::DEFAULT);
    let (name, literal, all, invalid) = run(async move {
        (
            client.resolve("slides.atoll.test").await,
            client.resolve("10.1.2.3").await,
            client.resolve_all("192.168.0.1").await,
            client.resolve("not a name").await,
        )
    });
    assert_eq!(name, Err(DnsError::NoServers));
    assert_eq!(literal, Ok(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))));
    assert_eq!(all, Ok(vec![IpAddr::V4(Ipv4Addr::new(192, 168, 0, 1))]));
    assert_eq!(invalid, Err(DnsError::InvalidName));
}

#[test]
fn a_server_that_never_answers_times_out_and_the_next_query_still_works() {
    let (server, client) = two_stacks(TcpConfig::DEFAULT);
    client.set_dns_servers(&[IpAddr::V4(SERVER_IP)]);
    let (silent, took, queries, later) = run(async move {
        // Takes the queries and answers none, until a while after the
        // resolver gave up.
        let deaf = UdpSocket::bind(&server, 53).unwrap();
        let mut queries = 0;
        let start = atoll_rt::time::Instant::now();
        let ((silent, took), _) = join(
            async { (client.resolve("slides.atoll.test").await, start.elapsed()) },
            timeout(RESOLVE_TIMEOUT + Duration::from_secs(1), async {
                let mut buf = [0; 512];
                while deaf.recv_from(&mut buf).await.is_ok() {
                    queries += 1;
                }
            }),
        )
        .await;
        drop(deaf); // frees port 53
        let _dns = spawn(tiny_dns_server(server));
        let later = client.resolve("slides.atoll.test").await;
        (silent, took, queries, later)
    });
    assert_eq!(silent, Err(DnsError::Timeout));
    assert_eq!(took, RESOLVE_TIMEOUT);
    // An A and an AAAA query, each sent again at least once.
    assert!(queries >= 4, "the queries were sent {queries} times: no retransmission");
    assert_eq!(later, Ok(IpAddr::V4(Ipv4Addr::new(10, 78, 0, 1))));
}

/// The half-open and ready connections of `stack`'s listener on `port`.
fn listener_queues(stack: &Stack, port: u16) -> (usize, usize) {
    let inner = stack.inner.borrow();
    let listener = &inner.listeners[&port];
    (listener.half_open_count(), listener.ready.len())
}

/// Sends `frame` into the server's side of the cable (`wire` is a handle
/// on the client's end), waiting while the cable is full.
async fn inject(wire: &PipeDevice, frame: &[u8]) {
    while !wire.send_frame(frame.to_vec()) {
        atoll_rt::yield_now().await;
    }
}

#[test]
fn a_syn_flood_evicts_the_oldest_handshakes_and_a_real_client_still_connects() {
    use smoltcp::wire::TcpControl;
    let tcp = TcpConfig {
        max_half_open: 16,
        ..TcpConfig::DEFAULT
    };
    let (a, b) = pipe();
    let wire = b.clone();
    let server = Stack::with_device(a, mac(1), static_ip(SERVER_IP), tcp);
    let client = Stack::with_device(b, mac(2), static_ip(CLIENT_IP), tcp);
    let listener = TcpListener::bind(&server, 80).unwrap();
    let server2 = server.clone();
    run(async move {
        // Forged sources on a network the server has no route to, as in a
        // real flood: its SYN-ACKs go nowhere and nobody resets them.
        for i in 0..1000u16 {
            let source = smoltcp::wire::Ipv4Address::new(198, 18, (i >> 8) as u8, i as u8);
            let syn = crate::listen::test_frames::tcp_frame(source, 1024 + i, 80, TcpControl::Syn, false);
            inject(&wire, &syn).await;
        }
        sleep(Duration::from_millis(10)).await;
        let (half_open, ready) = listener_queues(&server2, 80);
        assert!(half_open <= 16, "{half_open} half-open connections");
        assert_eq!(ready, 0);
        let sockets_during_flood = socket_count(&server2);
        assert!(
            sockets_during_flood <= 16 + tcp.listen_sockets,
            "{sockets_during_flood} sockets"
        );

        let mut stream = timeout(Duration::from_secs(1), TcpStream::connect(&client, (SERVER_IP, 80)))
            .await
            .expect("the real client connects within a second")
            .expect("and is not refused");
        let mut accepted = listener.accept().await;
        stream.write_all(b"hello").await.unwrap();
        let mut buf = [0; 5];
        let n = accepted.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"hello");
        // The forged handshakes time out and their sockets are freed.
        sleep(tcp.handshake_timeout + Duration::from_secs(1)).await;
        assert_eq!(listener_queues(&server2, 80).0, 0);
        assert_eq!(socket_count(&server2), tcp.listen_sockets + 1);
    });
}

#[test]
fn a_full_backlog_drops_syns_instead_of_refusing_them() {
    let tcp = TcpConfig {
        backlog: 2,
        ..TcpConfig::DEFAULT
    };
    let (server, client) = two_stacks(tcp);
    let listener = TcpListener::bind(&server, 80).unwrap();
    run(async move {
        let _first = TcpStream::connect(&client, (SERVER_IP, 80)).await.unwrap();
        let _second = TcpStream::connect(&client, (SERVER_IP, 80)).await.unwrap();
        let client2 = client.clone();
        let third = spawn(async move { TcpStream::connect(&client2, (SERVER_IP, 80)).await.map(drop) });
        sleep(Duration::from_secs(2)).await;
        assert!(
            !third.is_finished(),
            "the third SYN was answered while the backlog was full"
        );
        // Room again: the client's next SYN gets in.
        let _accepted = listener.accept().await;
        let third = timeout(Duration::from_secs(10), third)
            .await
            .expect("connects once there is room");
        assert_eq!(third, Ok(()));
    });
}

#[test]
fn when_memory_is_short_syns_are_dropped_and_open_connections_still_work() {
    const LIMIT: usize = 64 << 20;
    atoll_rt::platform::sim::set_memory(0, Some(LIMIT));
    let (server, client) = two_stacks(TcpConfig::DEFAULT);
    let listener = TcpListener::bind(&server, 80).unwrap();
    run(async move {
        let mut open = TcpStream::connect(&client, (SERVER_IP, 80)).await.unwrap();
        let mut accepted = listener.accept().await;
        let mut others = Vec::new();
        let mut refused = 0;
        for _ in 0..8 {
            let client = client.clone();
            others.push(spawn(async move {
                timeout(Duration::from_secs(3), TcpStream::connect(&client, (SERVER_IP, 80))).await
            }));
        }
        // The clients make their sockets (one heap for both stacks here);
        // then the heap is nearly full: no room for another connection.
        atoll_rt::yield_now().await;
        atoll_rt::platform::sim::set_memory(LIMIT - 64 * 1024, Some(LIMIT));
        // The sockets listening already take a few; the rest wait, unrefused.
        let mut connected = 0;
        for other in others {
            match other.await {
                Ok(Ok(_)) => connected += 1,
                Ok(Err(_)) => refused += 1,
                Err(_) => {}
            }
        }
        assert_eq!(refused, 0, "a SYN was answered with a reset");
        assert!(connected <= TcpConfig::DEFAULT.listen_sockets, "{connected} connected");
        // The open connection still works both ways.
        open.write_all(b"ping").await.unwrap();
        let mut buf = [0; 4];
        assert_eq!(accepted.read(&mut buf).await, Ok(4));
        accepted.write_all(b"pong").await.unwrap();
        assert_eq!(open.read(&mut buf).await, Ok(4));
        // Outgoing connections are refused at once, without allocating.
        assert_eq!(
            TcpStream::connect(&server, (CLIENT_IP, 9)).await.err(),
            Some(Error::OutOfMemory)
        );
        // Memory freed: new clients get in.
        atoll_rt::platform::sim::set_memory(0, Some(LIMIT));
        let late = timeout(Duration::from_secs(10), TcpStream::connect(&client, (SERVER_IP, 80))).await;
        assert!(matches!(late, Ok(Ok(_))), "{late:?}");
    });
}

/// A server stack (10.0.0.1, fd00::1) and a client stack (10.0.0.2,
/// fd00::2) on one cable, both dual-stack.
fn two_dual_stacks() -> (Stack, Stack) {
    let (a, b) = pipe();
    let ipv6 = |last: u16| Ipv6Config::Static {
        address: Ipv6Cidr::new(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, last), 64),
        gateway: None,
    };
    let server = Stack::dual_stack(a, mac(1), static_ip(SERVER_IP), ipv6(1), TcpConfig::DEFAULT);
    let client = Stack::dual_stack(b, mac(2), static_ip(CLIENT_IP), ipv6(2), TcpConfig::DEFAULT);
    (server, client)
}

#[test]
fn one_listener_takes_ipv4_and_ipv6_clients() {
    let (server, client) = two_dual_stacks();
    let server_v6 = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
    let server_link_local = server.ipv6_cidrs()[0].address();
    assert_eq!(server_link_local, Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0xff, 0xfe00, 1));
    let listener = TcpListener::bind(&server, 80).unwrap();
    let peers = run(async move {
        let _served = spawn(async move {
            loop {
                let mut stream = listener.accept().await;
                // Detached: each connection answers and closes by itself.
                drop(spawn(async move {
                    let peer = stream.peer_addr().unwrap();
                    let reply = format!("hello {}", peer.addr);
                    stream.write_all(reply.as_bytes()).await.unwrap();
                    stream.close();
                }));
            }
        });
        let mut peers = Vec::new();
        for remote in [
            IpAddress::from(SERVER_IP),
            IpAddress::from(server_v6),
            IpAddress::from(server_link_local),
        ] {
            let mut stream = TcpStream::connect(&client, (remote, 80)).await.unwrap();
            let reply = read_to_end(&mut stream).await.unwrap();
            peers.push(alloc::string::String::from_utf8(reply).unwrap());
        }
        peers
    });
    assert_eq!(
        peers,
        [
            "hello 10.0.0.2",
            "hello fd00::2",
            "hello fe80::ff:fe00:2", // link-local to link-local
        ]
    );
}

/// A router advertisement from fe80::1 (MAC 02:…:09) for `prefix`/64,
/// autonomous, with DNS server `dns` (RDNSS, 600 s) and an MTU of 1400, as
/// radvd or dnsmasq send it.
fn router_advert(prefix: Ipv6Addr, dns: Ipv6Addr) -> Vec<u8> {
    use crate::ndisc::test_frames::{mtu, prefix_info, rdnss, router_advert, source_link_layer};
    let options = [source_link_layer(), prefix_info(prefix), rdnss(600, &[dns]), mtu(1400)].concat();
    router_advert(&options, 255, false)
}

/// A stack left to configure itself (DHCP, SLAAC), and its wire.
fn autoconfigured_stack() -> (Stack, PipeDevice) {
    let (stack_end, wire) = pipe();
    let stack = Stack::dual_stack(
        stack_end,
        mac(1),
        Ipv4Config::Dhcp,
        Ipv6Config::Slaac,
        TcpConfig::DEFAULT,
    );
    (stack, wire)
}

#[test]
fn slaac_takes_address_router_and_dns_servers_from_an_advertisement() {
    let (stack, wire) = autoconfigured_stack();
    let prefix = Ipv6Addr::new(0x2001, 0xdb8, 7, 0, 0, 0, 0, 0);
    let dns = Ipv6Addr::new(0x2001, 0xdb8, 7, 0, 0, 0, 0, 0x53);
    let mtu_before = stack.mtu();
    let (solicited, address, gateway, servers, mtu) = run(async move {
        // The stack solicits routers first (ICMPv6 type 133 to ff02::2).
        let solicited = timeout(Duration::from_secs(10), async {
            loop {
                if let Some(frame) = wire.recv_frame() {
                    if frame.len() > 54 && frame[12..14] == [0x86, 0xdd] && frame[54] == 133 {
                        return frame[38..54] == Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2).octets();
                    }
                }
                sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        inject(&wire, &router_advert(prefix, dns)).await;
        // Without an IPv4 lease, a global IPv6 address is what it waits for.
        timeout(Duration::from_secs(10), stack.wait_address()).await.unwrap();
        (
            solicited,
            stack.ipv6_global(),
            stack.ipv6_gateway(),
            stack.dns_servers(),
            stack.mtu(),
        )
    });
    assert_eq!(solicited, Ok(true), "no router solicitation");
    assert_eq!(
        address,
        Some(Ipv6Cidr::new(
            Ipv6Addr::new(0x2001, 0xdb8, 7, 0, 0, 0xff, 0xfe00, 1),
            64
        ))
    );
    assert_eq!(gateway, Some(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1)));
    assert_eq!(servers, [IpAddr::V6(dns)]);
    assert_eq!((mtu_before, mtu), (1500, 1400), "the advertised link MTU");
}

#[test]
fn on_an_ipv6_only_network_wait_address_returns_the_slaac_address() {
    let (stack, wire) = autoconfigured_stack();
    let prefix = Ipv6Addr::new(0x2001, 0xdb8, 8, 0, 0, 0, 0, 0);
    let dns = Ipv6Addr::new(0x2001, 0xdb8, 8, 0, 0, 0, 0, 0x53);
    let (early, address, ipv4) = run(async move {
        let waiting = spawn({
            let stack = stack.clone();
            async move { stack.wait_address().await }
        });
        // DHCP asks and nobody answers; the router has not spoken yet.
        sleep(Duration::from_secs(5)).await;
        let early = waiting.is_finished();
        // The advertisement's address wakes it.
        inject(&wire, &router_advert(prefix, dns)).await;
        let address = timeout(Duration::from_secs(10), waiting).await;
        let ipv4 = timeout(Duration::from_secs(10), stack.wait_configured()).await;
        (early, address, ipv4.ok())
    });
    assert!(!early, "wait_address returned before any address");
    assert_eq!(
        address,
        Ok(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 8, 0, 0, 0xff, 0xfe00, 1)))
    );
    assert_eq!(ipv4, None, "wait_configured waits for IPv4 alone");
}

#[test]
fn wait_address_prefers_ipv4_and_takes_a_static_ipv6_address_at_once() {
    let (server, _client) = two_dual_stacks();
    let (a, _b) = pipe();
    let ipv6_only = Stack::dual_stack(
        a,
        mac(3),
        Ipv4Config::Dhcp,
        Ipv6Config::Static {
            address: Ipv6Cidr::new(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 3), 64),
            gateway: None,
        },
        TcpConfig::DEFAULT,
    );
    let addresses = run(async move { (server.wait_address().await, ipv6_only.wait_address().await) });
    assert_eq!(
        addresses,
        (
            IpAddr::V4(SERVER_IP),
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 3))
        )
    );
}

#[test]
fn udp_over_ipv6() {
    let (server, client) = two_dual_stacks();
    let server_v6 = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
    let (echoed, from) = run(async move {
        let echo = UdpSocket::bind(&server, 7).unwrap();
        let _echo = spawn(async move {
            let mut buf = [0; 64];
            loop {
                let (n, peer) = echo.recv_from(&mut buf).await.unwrap();
                echo.send_to(&buf[..n], peer).await.unwrap();
            }
        });
        let socket = UdpSocket::bind(&client, 0).unwrap();
        let mut buf = [0; 64];
        // As over IPv4: the first datagram to a neighbour not yet known is
        // dropped while the stack solicits it (neighbour discovery).
        let (n, from) = loop {
            socket.send_to(b"over ipv6", (server_v6, 7)).await.unwrap();
            if let Ok(received) = timeout(Duration::from_millis(100), socket.recv_from(&mut buf)).await {
                break received.unwrap();
            }
        };
        (buf[..n].to_vec(), from)
    });
    assert_eq!(echoed, b"over ipv6");
    assert_eq!(from, IpEndpoint::new(server_v6.into(), 7));
}

/// The TCP segment in `frame`, if it is one the server sent to the client:
/// (SYN, ACK, sequence number).
fn segment_to_client(frame: &[u8]) -> Option<(bool, bool, i32)> {
    let ethernet = EthernetFrame::new_checked(frame).ok()?;
    let ip = Ipv4Packet::new_checked(ethernet.payload()).ok()?;
    if ip.next_header() != IpProtocol::Tcp || ip.dst_addr() != CLIENT_IP {
        return None;
    }
    let tcp = smoltcp::wire::TcpPacket::new_checked(ip.payload()).ok()?;
    Some((tcp.syn(), tcp.ack(), tcp.seq_number().0))
}

/// Tells the server stack at the far end of `wire` the client's link
/// address, as the client's own ARP request would.
fn announce_client(wire: &PipeDevice) {
    let reply = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Reply,
        source_hardware_addr: EthernetAddress(mac(2)),
        source_protocol_addr: CLIENT_IP,
        target_hardware_addr: EthernetAddress(mac(1)),
        target_protocol_addr: SERVER_IP,
    };
    let mut arp = vec![0; reply.buffer_len()];
    reply.emit(&mut ArpPacket::new_unchecked(&mut arp));
    assert!(wire.send_frame(ethernet_frame(mac(1), EthernetProtocol::Arp, &arp)));
}

/// The TCP flags of the next segment the server sends the client:
/// (SYN, ACK, RST).
async fn next_segment_flags(wire: &PipeDevice) -> (bool, bool, bool) {
    loop {
        let frame = next_frame_within(wire, Duration::from_secs(3)).await;
        let Ok(ethernet) = EthernetFrame::new_checked(&frame) else {
            continue;
        };
        let Ok(ip) = Ipv4Packet::new_checked(ethernet.payload()) else {
            continue;
        };
        if ip.next_header() != IpProtocol::Tcp || ip.dst_addr() != CLIENT_IP {
            continue;
        }
        let tcp = smoltcp::wire::TcpPacket::new_checked(ip.payload()).unwrap();
        return (tcp.syn(), tcp.ack(), tcp.rst());
    }
}

/// A server stack listening on port 80, and the far end of its cable for a
/// test to speak raw frames on.
fn listening_server_on_a_wire() -> (Stack, TcpListener, PipeDevice) {
    let (stack_end, wire) = pipe();
    let server = Stack::with_device(stack_end, mac(1), static_ip(SERVER_IP), TcpConfig::DEFAULT);
    let listener = TcpListener::bind(&server, 80).unwrap();
    (server, listener, wire)
}

#[test]
fn dropping_a_listener_resets_its_half_open_handshakes() {
    use crate::listen::test_frames::tcp_segment;
    use smoltcp::wire::TcpControl;
    let (server2, listener, wire) = listening_server_on_a_wire();
    run(async move {
        announce_client(&wire);
        sleep(Duration::from_millis(1)).await;
        assert!(wire.send_frame(tcp_segment(CLIENT_IP, 40001, 80, TcpControl::Syn, 1, None)));
        assert_eq!(next_segment_flags(&wire).await, (true, true, false), "a SYN-ACK");
        assert_eq!(server2.inner.borrow().half_open.len(), 1);
        drop(listener);
        // The handshake's socket goes back to the main set to send its reset.
        assert!(next_segment_flags(&wire).await.2, "a reset");
        assert_eq!(server2.inner.borrow().half_open.len(), 0);
        sleep(Duration::from_millis(100)).await;
        assert_eq!(socket_count(&server2), 0, "every socket is freed");
    });
}

#[test]
fn a_handshake_waits_in_the_half_open_table_and_completes_from_it() {
    use crate::listen::test_frames::tcp_segment;
    use smoltcp::wire::TcpControl;
    let (server2, listener, wire) = listening_server_on_a_wire();
    run(async move {
        assert!(wire.send_frame(tcp_segment(CLIENT_IP, 40000, 80, TcpControl::Syn, 1, None)));
        // The server does not know the client's link address yet: it asks.
        let request = next_frame(&wire).await;
        let frame = EthernetFrame::new_checked(&request).unwrap();
        assert_eq!(frame.ethertype(), EthernetProtocol::Arp);
        announce_client(&wire);
        // The answer gets the SYN-ACK out at once, though the socket has
        // moved to the half-open table meanwhile.
        let sent = atoll_rt::time::Instant::now();
        let syn_ack = segment_to_client(&next_frame(&wire).await).expect("a SYN-ACK");
        assert!(sent.elapsed() < Duration::from_millis(10), "{:?}", sent.elapsed());
        assert_eq!((syn_ack.0, syn_ack.1), (true, true));
        assert_eq!(server2.inner.borrow().half_open.len(), 1);
        // Unanswered, it is sent again from the table after about a second.
        let first = atoll_rt::time::Instant::now();
        let again = loop {
            let frame = next_frame_within(&wire, Duration::from_secs(3)).await;
            if let Some(segment) = segment_to_client(&frame) {
                break segment;
            }
        };
        let waited = first.elapsed();
        assert_eq!(again, syn_ack, "the SYN-ACK again");
        assert!(
            (Duration::from_secs(1)..Duration::from_millis(1300)).contains(&waited),
            "retransmitted after {waited:?}"
        );
        // The client's ACK goes to the table, and the connection to accept.
        let ack = tcp_segment(
            CLIENT_IP,
            40000,
            80,
            TcpControl::None,
            2,
            Some(syn_ack.2.wrapping_add(1)),
        );
        assert!(wire.send_frame(ack));
        let accepted = timeout(Duration::from_millis(100), listener.accept())
            .await
            .expect("the connection is accepted at once");
        assert_eq!(server2.inner.borrow().half_open.len(), 0);
        drop(accepted);
    });
}

/// Waits (on simulated time) up to `limit` for the next frame the stack
/// sends.
async fn next_frame_within(wire: &PipeDevice, limit: Duration) -> Vec<u8> {
    let start = atoll_rt::time::Instant::now();
    while start.elapsed() < limit {
        if let Some(frame) = wire.recv_frame() {
            return frame;
        }
        sleep(Duration::from_millis(1)).await;
    }
    panic!("the stack sent nothing within {limit:?}");
}
