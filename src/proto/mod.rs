//! Wire-level DNS helpers that know nothing of detour's config or state: TSIG (RFC 8945)
//! signing and verifying, and DNS Cookies (RFC 7873, Server Cookies per RFC 9018). The
//! config reads their keys and secrets; the DNS listeners use them per message.

pub mod cookie;
pub mod tsig;
