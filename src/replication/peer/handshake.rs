//! The handshake between two nodes, as pure functions (docs/PROTOCOL.md
//! part 2, "Handshake"). Each side proves it holds the cluster secret
//! without sending it: the connecting node sends a random nonce in HELLO;
//! the accepting node answers with its own nonce (HELLO answer); the
//! connecting node sends its proof (PROOF); the accepting node checks it
//! (refusing and logging a peer without the secret) and answers WELCOME
//! with its own proof, which the connecting node checks in turn. A proof is
//! HMAC-SHA256 keyed by the secret over a role label, the cluster id, both
//! node ids and both nonces, so it is good for one connection, one
//! direction and one pair of nodes only. Proofs are compared in constant
//! time (`Mac::verify_slice`).

use super::codec::{Hello, HelloAnswer, NONCE_BYTES, PEER_VERSION};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The cluster secret, from the configuration file. Never printed, never
/// sent.
#[derive(Clone)]
pub struct ClusterSecret(Vec<u8>);

/// Shortest cluster secret accepted, in bytes.
pub const SECRET_BYTES_MIN: usize = 16;

impl ClusterSecret {
    /// A secret of at least `SECRET_BYTES_MIN` bytes; `None` if shorter.
    pub fn new(bytes: &[u8]) -> Option<ClusterSecret> {
        (bytes.len() >= SECRET_BYTES_MIN).then(|| ClusterSecret(bytes.to_vec()))
    }
}

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

/// Which side of the connection a proof speaks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The node that connected (sent HELLO).
    Connecting,
    /// The node that accepted (answered HELLO).
    Accepting,
}

/// What both proofs of one connection cover.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transcript {
    /// The cluster id both sides named.
    pub cluster_id: u64,
    /// The connecting node.
    pub connecting_id: u64,
    /// The accepting node.
    pub accepting_id: u64,
    /// The connecting node's nonce.
    pub connecting_nonce: [u8; NONCE_BYTES],
    /// The accepting node's nonce.
    pub accepting_nonce: [u8; NONCE_BYTES],
}

fn mac(secret: &ClusterSecret, role: Role, transcript: &Transcript) -> Hmac<Sha256> {
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(&secret.0).expect("HMAC accepts any key length");
    mac.update(match role {
        Role::Connecting => b"x700 peer connecting\0",
        Role::Accepting => b"x700 peer accepting\0\0",
    });
    mac.update(&transcript.cluster_id.to_le_bytes());
    mac.update(&transcript.connecting_id.to_le_bytes());
    mac.update(&transcript.accepting_id.to_le_bytes());
    mac.update(&transcript.connecting_nonce);
    mac.update(&transcript.accepting_nonce);
    mac
}

/// The proof `role` sends for `transcript`.
pub fn prove(secret: &ClusterSecret, role: Role, transcript: &Transcript) -> [u8; NONCE_BYTES] {
    mac(secret, role, transcript).finalize().into_bytes().into()
}

/// True if `proof` is `role`'s proof for `transcript` under `secret`
/// (compared in constant time).
pub fn verify(
    secret: &ClusterSecret,
    role: Role,
    transcript: &Transcript,
    proof: &[u8; NONCE_BYTES],
) -> bool {
    mac(secret, role, transcript).verify_slice(proof).is_ok()
}

/// A fresh random nonce from the operating system.
pub fn nonce() -> Result<[u8; NONCE_BYTES], String> {
    let mut nonce = [0u8; NONCE_BYTES];
    getrandom::getrandom(&mut nonce).map_err(|e| format!("random nonce: {e}"))?;
    Ok(nonce)
}

/// Why a handshake was refused; the refusing side logs it with the peer's
/// address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The peer speaks another protocol version.
    #[error("protocol version {0}, this node speaks {PEER_VERSION}")]
    Version(u16),
    /// The peer belongs to another cluster.
    #[error("cluster id {0:#x} is not ours")]
    Cluster(u64),
    /// The peer claims our own node id: a node never connects to itself.
    #[error("node id {0} is our own")]
    OwnId(u64),
    /// The peer wanted another node (its address book is wrong).
    #[error("it asked for node {0}")]
    WrongTarget(u64),
    /// The peer's proof does not match: it does not hold the secret.
    #[error("wrong cluster secret (node {0})")]
    Secret(u64),
}

/// The accepting side's check of a HELLO: who it may talk to.
pub fn check_hello(hello: &Hello, cluster_id: u64, own_id: u64) -> Result<(), Refusal> {
    if hello.version != PEER_VERSION {
        return Err(Refusal::Version(hello.version));
    }
    if hello.cluster_id != cluster_id {
        return Err(Refusal::Cluster(hello.cluster_id));
    }
    if hello.node_id == own_id {
        return Err(Refusal::OwnId(hello.node_id));
    }
    if hello.target_id != own_id {
        return Err(Refusal::WrongTarget(hello.target_id));
    }
    Ok(())
}

/// The connecting side's check of a HELLO answer from the node it meant to
/// reach, given the HELLO it sent; the transcript both proofs cover.
pub fn check_answer(answer: &HelloAnswer, hello: &Hello) -> Result<Transcript, Refusal> {
    if answer.version != PEER_VERSION {
        return Err(Refusal::Version(answer.version));
    }
    if answer.cluster_id != hello.cluster_id {
        return Err(Refusal::Cluster(answer.cluster_id));
    }
    if answer.node_id == hello.node_id {
        return Err(Refusal::OwnId(answer.node_id));
    }
    if answer.node_id != hello.target_id {
        return Err(Refusal::WrongTarget(answer.node_id));
    }
    Ok(Transcript {
        cluster_id: hello.cluster_id,
        connecting_id: hello.node_id,
        accepting_id: answer.node_id,
        connecting_nonce: hello.nonce,
        accepting_nonce: answer.nonce,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transcript() -> Transcript {
        Transcript {
            cluster_id: 7,
            connecting_id: 1,
            accepting_id: 2,
            connecting_nonce: [1; NONCE_BYTES],
            accepting_nonce: [2; NONCE_BYTES],
        }
    }

    #[test]
    fn a_proof_holds_for_its_secret_role_and_transcript_only() {
        let secret = ClusterSecret::new(b"0123456789abcdef").unwrap();
        let other = ClusterSecret::new(b"0123456789abcdeX").unwrap();
        let t = transcript();
        let proof = prove(&secret, Role::Connecting, &t);
        assert!(verify(&secret, Role::Connecting, &t, &proof));
        assert!(!verify(&other, Role::Connecting, &t, &proof));
        assert!(!verify(&secret, Role::Accepting, &t, &proof));
        let mut changed = t;
        changed.accepting_nonce[0] ^= 1;
        assert!(!verify(&secret, Role::Connecting, &changed, &proof));
        assert!(ClusterSecret::new(b"short").is_none());
    }
}
