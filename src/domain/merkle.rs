//! The audit log's Merkle tree, exactly RFC 6962 / RFC 9162 (the shape Certificate
//! Transparency, Go's sumdb and Sigstore use): leaves `SHA-256(0x00 ‖ data)`, interior nodes
//! `SHA-256(0x01 ‖ left ‖ right)`, the split at the largest power of two below the size.
//!
//! The tree is never held whole. The writer keeps its right edge (`Frontier`) and emits the
//! hash of every completed 256-leaf chunk (`CHUNK`); verification and proofs read perfect
//! subtrees through `Subtrees`, which storage answers from chunk hashes and leaf hashes.

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// Leaves per stored chunk hash (a level-8 node, as in C2SP tlog tiles).
pub const CHUNK_LEVEL: u32 = 8;
pub const CHUNK: u64 = 1 << CHUNK_LEVEL;

pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: the hash of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two strictly below `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// Hashes of perfect, aligned subtrees: leaves `[start, start + 2^level)`.
pub trait Subtrees {
    type Error;
    fn perfect(&self, start: u64, level: u32) -> Result<Hash, Self::Error>;
}

/// A tree held as its leaf hashes (tests, bundles, one chunk).
impl Subtrees for [Hash] {
    type Error = std::convert::Infallible;
    fn perfect(&self, start: u64, level: u32) -> Result<Hash, Self::Error> {
        if level == 0 {
            return Ok(self[start as usize]);
        }
        let half = 1u64 << (level - 1);
        Ok(node_hash(
            &self.perfect(start, level - 1)?,
            &self.perfect(start + half, level - 1)?,
        ))
    }
}

/// MTH(D[start : start + n]) where the range starts on a boundary of its largest split (as
/// every range the RFC's recursion visits does).
pub fn subtree_root<S: Subtrees + ?Sized>(s: &S, start: u64, n: u64) -> Result<Hash, S::Error> {
    if n == 0 {
        return Ok(empty_root());
    }
    if n.is_power_of_two() {
        return s.perfect(start, n.trailing_zeros());
    }
    let k = split(n);
    Ok(node_hash(
        &s.perfect(start, k.trailing_zeros())?,
        &subtree_root(s, start + k, n - k)?,
    ))
}

pub fn root<S: Subtrees + ?Sized>(s: &S, size: u64) -> Result<Hash, S::Error> {
    subtree_root(s, 0, size)
}

/// The audit path of leaf `index` in the tree of `size` leaves (RFC 6962 §2.1.1), deepest first.
pub fn inclusion_proof<S: Subtrees + ?Sized>(
    s: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, S::Error> {
    let mut path = Vec::new();
    // Walk down from the root, collecting the sibling of each step, then reverse.
    let (mut start, mut n, mut m) = (0u64, size, index);
    while n > 1 {
        let k = split(n);
        if m < k {
            path.push(subtree_root(s, start + k, n - k)?);
            n = k;
        } else {
            path.push(s.perfect(start, k.trailing_zeros())?);
            start += k;
            m -= k;
            n -= k;
        }
    }
    path.reverse();
    Ok(path)
}

/// The proof that the tree of `old` leaves is a prefix of the tree of `new` (RFC 6962 §2.1.2).
pub fn consistency_proof<S: Subtrees + ?Sized>(
    s: &S,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, S::Error> {
    let mut proof = Vec::new();
    if old == 0 || old >= new {
        return Ok(proof);
    }
    let (mut start, mut n, mut m, mut whole) = (0u64, new, old, true);
    while m != n {
        let k = split(n);
        if m <= k {
            proof.push(subtree_root(s, start + k, n - k)?);
            n = k;
        } else {
            proof.push(s.perfect(start, k.trailing_zeros())?);
            start += k;
            m -= k;
            n -= k;
            whole = false;
        }
    }
    if !whole {
        proof.push(subtree_root(s, start, m)?);
    }
    proof.reverse();
    Ok(proof)
}

/// RFC 9162 §2.1.3.2.
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, path: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s, mut r) = (index, size - 1, *leaf);
    for p in path {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && r == *root
}

/// RFC 9162 §2.1.4.2, with the trivial cases: an empty old tree is a prefix of anything, and
/// equal sizes need equal roots and no proof.
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old > new {
        return false;
    }
    if old == 0 {
        return proof.is_empty();
    }
    if old == new {
        return proof.is_empty() && old_root == new_root;
    }
    if proof.is_empty() {
        return false;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let (mut f, mut s) = (old - 1, new - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    fr == *old_root && sr == *new_root && s == 0
}

/// The right edge of the tree: one perfect subtree hash per set bit of `size`, largest
/// first. Enough to append leaves and to compute the root, in O(log n) space.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frontier {
    size: u64,
    hashes: Vec<Hash>,
}

/// Why stored frontier bytes cannot be a frontier.
#[derive(Debug, thiserror::Error)]
#[error("the stored tree edge does not match its size")]
pub struct BadFrontier;

impl Frontier {
    pub fn size(&self) -> u64 {
        self.size
    }

    /// From its stored form: the hashes concatenated, largest subtree first.
    pub fn from_bytes(size: u64, bytes: &[u8]) -> Result<Frontier, BadFrontier> {
        if bytes.len() != size.count_ones() as usize * 32 {
            return Err(BadFrontier);
        }
        let hashes = bytes
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect();
        Ok(Frontier { size, hashes })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.hashes.concat()
    }

    /// Appends a leaf; returns the chunk it completed, if any: `(chunk index, chunk hash)`.
    pub fn push(&mut self, leaf: Hash) -> Option<(u64, Hash)> {
        let mut h = leaf;
        let mut level = 0u32;
        let mut chunk = None;
        while (self.size >> level) & 1 == 1 {
            let Some(left) = self.hashes.pop() else {
                break;
            };
            h = node_hash(&left, &h);
            level += 1;
            if level == CHUNK_LEVEL {
                chunk = Some(((self.size + 1) / CHUNK - 1, h));
            }
        }
        self.hashes.push(h);
        self.size += 1;
        chunk
    }

    pub fn root(&self) -> Hash {
        let mut it = self.hashes.iter().rev();
        let Some(last) = it.next() else {
            return empty_root();
        };
        it.fold(*last, |r, left| node_hash(left, &r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(h: &Hash) -> String {
        h.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The RFC 6962 reference inputs used by Certificate Transparency's test suites.
    fn reference_leaves() -> Vec<Hash> {
        let inputs: [&[u8]; 8] = [
            b"",
            b"\x00",
            b"\x10",
            b"\x20\x21",
            b"\x30\x31",
            b"\x40\x41\x42\x43",
            b"\x50\x51\x52\x53\x54\x55\x56\x57",
            b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
        ];
        inputs.iter().map(|d| leaf_hash(d)).collect()
    }

    #[test]
    fn roots_match_the_reference_vectors() {
        let expected = [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        let leaves = reference_leaves();
        assert_eq!(
            hex(&empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let mut f = Frontier::default();
        for (n, want) in expected.iter().enumerate() {
            f.push(leaves[n]);
            let Ok(r) = root(&leaves[..], n as u64 + 1);
            assert_eq!(hex(&r), *want, "size {}", n + 1);
            assert_eq!(hex(&f.root()), *want, "frontier at size {}", n + 1);
        }
    }

    #[test]
    fn reference_proofs_have_the_published_shape() {
        // From the same suite: the consistency proof 6 → 8 and the audit path of leaf 0 in 8.
        let leaves = reference_leaves();
        let Ok(p) = consistency_proof(&leaves[..], 6, 8);
        let got: Vec<String> = p.iter().map(hex).collect();
        assert_eq!(
            got,
            [
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ]
        );
        let Ok(p) = inclusion_proof(&leaves[..], 0, 8);
        let got: Vec<String> = p.iter().map(hex).collect();
        assert_eq!(
            got,
            [
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ]
        );
    }

    #[test]
    fn every_proof_up_to_40_leaves_verifies_and_a_changed_one_does_not() {
        let leaves: Vec<Hash> = (0..40u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for n in 1..=40u64 {
            let Ok(r) = root(&leaves[..], n);
            for i in 0..n {
                let Ok(p) = inclusion_proof(&leaves[..], i, n);
                assert!(verify_inclusion(i, n, &leaves[i as usize], &p, &r));
                assert!(!verify_inclusion(i, n, &leaves[(i as usize + 1) % 40], &p, &r));
                if let Some(first) = p.first() {
                    let mut bad = p.clone();
                    bad[0] = node_hash(first, first);
                    assert!(!verify_inclusion(i, n, &leaves[i as usize], &bad, &r));
                }
            }
            for m in 0..=n {
                let Ok(old) = root(&leaves[..], m);
                let Ok(p) = consistency_proof(&leaves[..], m, n);
                assert!(verify_consistency(m, n, &old, &r, &p), "{m} → {n}");
                if m > 0 && m < n {
                    let other = leaf_hash(b"other");
                    assert!(!verify_consistency(m, n, &other, &r, &p));
                    assert!(!verify_consistency(m, n, &old, &other, &p));
                }
            }
        }
    }

    #[test]
    fn the_frontier_emits_each_chunk_once_with_its_hash() {
        let leaves: Vec<Hash> = (0..600u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut f = Frontier::default();
        let mut chunks = Vec::new();
        for l in &leaves {
            chunks.extend(f.push(*l));
        }
        assert_eq!(chunks.len(), 2);
        for (idx, h) in chunks {
            let Ok(want) = leaves[..].perfect(idx * CHUNK, CHUNK_LEVEL);
            assert_eq!(h, want);
        }
        let back = Frontier::from_bytes(f.size(), &f.to_bytes());
        assert!(matches!(back, Ok(ref b) if *b == f));
        assert!(Frontier::from_bytes(f.size() + 1, &f.to_bytes()).is_err());
    }

    proptest! {
        #[test]
        fn frontier_root_equals_the_recursive_root(n in 0u64..700) {
            let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&i.to_le_bytes())).collect();
            let mut f = Frontier::default();
            for l in &leaves { f.push(*l); }
            let Ok(r) = root(&leaves[..], n);
            prop_assert_eq!(f.root(), r);
        }
    }
}
