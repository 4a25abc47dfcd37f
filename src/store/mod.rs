//! Crash-safe, wear-friendly record store on flash.
