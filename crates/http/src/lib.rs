//! HTTP/1.1 server.
#![no_std]
