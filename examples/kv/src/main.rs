//! A key-value service: the store of `atoll::kv` on the block device `data`,
//! served over HTTP on the network device `service`.
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /kv/KEY` | 200 with the value, or 404 |
//! | `PUT /kv/KEY` (body: the value) | 204 once the value is durable |
//! | `DELETE /kv/KEY` | 204, or 404 if there was no such key |
//! | `GET /kv` | 200, the keys, one per line |
//! | `GET /status` | 200: keys, whether the disk is read-only, what opening it found |
//! | `GET /healthz` | 200 |
//!
//! A `PUT` or `DELETE` is answered only after the change is on the disk
//! (flushed), so an acknowledged change survives the unikernel being
//! killed. A full disk is 507; keys longer than 255 bytes or values over
//! 64 KiB are 413; a change on a disk attached read-only (`--block-ro:`)
//! is 403; a value the disk damaged is 500 until the key is put or deleted.
//!
//! If the disk was damaged behind the store's back, the store still opens
//! with every intact record, logs a `WARN` line at boot saying what was
//! lost, and `/status` repeats it (`data lost at open: yes`, and the keys).
//!
//! Run it: `truncate -s 16M kv.img`, then `atoll run examples/kv
//! --block:data=kv.img` and `curl -X PUT --data hello
//! http://127.0.0.1:8080/kv/greeting`.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;

use atoll::block::BlockDevice;
use atoll::http::{serve_connection, Handler, Limits, Method, Request, Response, RtTimer, Status};
use atoll::kv::{KvError, Store};
use atoll::log::info;
use atoll::net::{Stack, TcpListener};

const PORT: u16 = 80;
const TEXT: &str = "text/plain; charset=utf-8";

/// The service: one store, shared by every connection's task (the
/// executor runs one task at a time, so a `RefCell` suffices).
struct KvService {
    store: RefCell<Store<BlockDevice>>,
}

impl KvService {
    fn answer(&self, method: Method, path: &str, body: &[u8]) -> Response {
        if path == "/healthz" {
            return Response::ok(TEXT, &b"ok\n"[..]);
        }
        if path == "/status" {
            return Response::ok(TEXT, self.status());
        }
        if path == "/kv" {
            return match method {
                Method::Get | Method::Head => {
                    let store = self.store.borrow();
                    let mut list = Vec::new();
                    for key in store.keys() {
                        list.extend_from_slice(key);
                        list.push(b'\n');
                    }
                    Response::ok(TEXT, list)
                }
                _ => Response::method_not_allowed("GET, HEAD"),
            };
        }
        let Some(key) = path.strip_prefix("/kv/").filter(|key| !key.is_empty()) else {
            return Response::not_found();
        };
        let mut store = self.store.borrow_mut();
        let result = match method {
            Method::Get | Method::Head => store.get(key.as_bytes()).map(|value| match value {
                Some(value) => Response::ok("application/octet-stream", value),
                None => Response::not_found(),
            }),
            Method::Put => store
                .put(key.as_bytes(), body)
                .map(|()| Response::error(Status::NO_CONTENT)),
            Method::Delete => store.delete(key.as_bytes()).map(|existed| {
                if existed {
                    Response::error(Status::NO_CONTENT)
                } else {
                    Response::not_found()
                }
            }),
            _ => return Response::method_not_allowed("GET, HEAD, PUT, DELETE"),
        };
        result.unwrap_or_else(|e| {
            atoll::log::warn!("kv: {method:?} {path}: {e}");
            let status = match e {
                KvError::KeyTooLong { .. } | KvError::ValueTooLarge { .. } => Status::CONTENT_TOO_LARGE,
                KvError::Full { .. } => Status::from_code(507).unwrap_or(Status::INTERNAL_SERVER_ERROR),
                KvError::ReadOnly => Status::FORBIDDEN,
                _ => Status::INTERNAL_SERVER_ERROR,
            };
            Response::error(status)
        })
    }
}

impl KvService {
    /// `GET /status`: the store's state and what opening the disk found.
    fn status(&self) -> String {
        let store = self.store.borrow();
        let recovery = store.recovery();
        let mut text = format!(
            "keys: {}\nread-only: {}\nat open: {recovery}\ndata lost at open: {}\n",
            store.len(),
            if store.is_read_only() { "yes" } else { "no" },
            if recovery.data_lost() { "yes" } else { "no" },
        );
        for key in &recovery.lost_keys {
            text.push_str("damaged key: ");
            text.push_str(&String::from_utf8_lossy(key));
            text.push('\n');
        }
        text
    }
}

impl Handler for KvService {
    async fn handle(&self, request: &Request<'_>) -> Response {
        self.answer(request.method(), request.path(), request.body())
    }
}

/// Why the service could not start.
enum StartError {
    Disk(atoll::block::BlockError),
    Store(KvError),
    Network(atoll::net::StackError),
}

/// What `main` prints (`Error: ...`) when it cannot start.
impl core::fmt::Debug for StartError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            StartError::Disk(e) => write!(f, "block device `data`: {e}"),
            StartError::Store(e) => write!(f, "the store on block device `data`: {e}"),
            StartError::Network(e) => write!(f, "network device `service`: {e}"),
        }
    }
}

#[atoll::main(net = "service", block = "data")]
async fn main() -> Result<(), StartError> {
    let disk = BlockDevice::open("data").map_err(StartError::Disk)?;
    let store = Store::open(disk).map_err(StartError::Store)?;
    let read_only = if store.is_read_only() { " (read-only)" } else { "" };
    info!("kv: {} keys on the disk{read_only}", store.len());
    let service = Rc::new(KvService {
        store: RefCell::new(store),
    });
    let stack = Stack::new("service").map_err(StartError::Network)?;
    // Either family's first address: an IPv6-only network (SLAAC, no DHCP
    // server) serves too.
    let address = stack.wait_address().await;
    let listener = TcpListener::bind(&stack, PORT).map_err(|e| StartError::Network(e.into()))?;
    atoll::println!("listening on http://{}/", core::net::SocketAddr::new(address, PORT));
    loop {
        let mut stream = listener.accept().await;
        let service = Rc::clone(&service);
        // Detached: each connection's task ends by itself.
        drop(atoll::task::spawn(async move {
            match serve_connection(&mut stream, &*service, &Limits::DEFAULT, &RtTimer).await {
                Ok(_) => stream.close(),
                Err(_) => stream.abort(),
            }
        }));
    }
}
