//! Single probes: HTTP, TCP, DNS and per-address checks, each bounded by a timeout.
