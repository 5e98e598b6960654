//! The ticket: what the session cookie holds, sealed.
//!
//! A random 128-bit session id, the 256-bit key that seals this session's
//! record in the store, and the issue time. Whoever reads the store alone
//! holds neither (threat-model T09); whoever holds the cookie alone holds no
//! token.

use rand::RngCore;
use zeroize::Zeroizing;

use super::seal::SealError;
use crate::secret::Secret;

const LEN: usize = 16 + 32 + 8;

/// The id and the key are [`Secret`]s: they never print, are wiped on
/// drop, and are not `Copy`, so they are never copied by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Ticket {
    pub sid: Secret<[u8; 16]>,
    pub data_key: Secret<[u8; 32]>,
    /// Seconds since the Unix epoch when the session was created.
    pub issued_at: u64,
}

// === impl Ticket ===

impl Ticket {
    /// A new session: fresh id and key from the OS-seeded CSPRNG.
    pub fn generate(issued_at: u64) -> Self {
        let mut sid = Zeroizing::new([0; 16]);
        let mut data_key = Zeroizing::new([0; 32]);
        rand::rng().fill_bytes(&mut *sid);
        rand::rng().fill_bytes(&mut *data_key);
        Self {
            sid: Secret::new(*sid),
            data_key: Secret::new(*data_key),
            issued_at,
        }
    }

    pub fn to_bytes(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let mut out = zeroize::Zeroizing::new(Vec::with_capacity(LEN));
        out.extend_from_slice(self.sid.expose());
        out.extend_from_slice(self.data_key.expose());
        out.extend_from_slice(&self.issued_at.to_be_bytes());
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SealError> {
        if bytes.len() != LEN {
            return Err(SealError::Malformed);
        }
        let mut sid = Zeroizing::new([0; 16]);
        let mut data_key = Zeroizing::new([0; 32]);
        sid.copy_from_slice(&bytes[..16]);
        data_key.copy_from_slice(&bytes[16..48]);
        let mut at = [0u8; 8];
        at.copy_from_slice(&bytes[48..]);
        Ok(Self {
            sid: Secret::new(*sid),
            data_key: Secret::new(*data_key),
            issued_at: u64::from_be_bytes(at),
        })
    }
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("issued_at", &self.issued_at)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_other_lengths() {
        let t = Ticket::generate(1_700_000_000);
        assert_eq!(Ticket::from_bytes(&t.to_bytes()).unwrap(), t);
        assert!(Ticket::from_bytes(&t.to_bytes()[1..]).is_err());
        assert!(!format!("{t:?}").contains("sid"));
    }

    #[test]
    fn the_id_and_key_never_print() {
        let t = Ticket::generate(0);
        assert_eq!(format!("{:?}", t.sid), "[redacted]");
        assert_eq!(format!("{:?}", t.data_key), "[redacted]");
        assert_eq!(format!("{t:?}"), "Ticket { issued_at: 0, .. }");
    }

    #[test]
    fn ck12_session_ids_are_128_bit_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100_000 {
            assert!(seen.insert(*Ticket::generate(0).sid.expose()));
        }
    }
}
