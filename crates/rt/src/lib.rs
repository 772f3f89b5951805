//! The Atoll guest runtime.
#![no_std]
