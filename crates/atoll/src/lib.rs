//! Atoll: the facade apps depend on.
#![no_std]
