//! A file cache of embeddings, so that re-running training or evaluation on
//! the same texts does not embed them again (10k texts take minutes).
//!
//! Key: SHA-256 of (model identity, kind, text); the model identity should
//! name the exact weights (e.g. the model file's hash), so a new model never
//! reads old vectors. File: `AICCEMB1`, the dimension (u32 LE), then records
//! of key (32 bytes) + dim f32 LE, appended one batch per write. A torn last
//! record (a crash mid-write) is cut off on open.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use aicc_core::EmbedKind;
use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"AICCEMB1";

pub struct EmbedCache {
    path: PathBuf,
    model: String,
    dim: usize,
    map: HashMap<[u8; 32], Vec<f32>>,
}

impl EmbedCache {
    /// Opens (or starts) the cache at `path`; a file of another format or
    /// dimension is replaced.
    pub fn open(path: &Path, model: &str, dim: usize) -> std::io::Result<Self> {
        let mut cache = Self { path: path.to_path_buf(), model: model.to_string(), dim, map: HashMap::new() };
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => vec![],
            Err(e) => return Err(e),
        };
        let header = MAGIC.len() + 4;
        let fits = data.len() >= header && &data[..8] == MAGIC && u32::from_le_bytes([data[8], data[9], data[10], data[11]]) as usize == dim;
        if !fits {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut head = MAGIC.to_vec();
            head.extend_from_slice(&(dim as u32).to_le_bytes());
            std::fs::write(path, head)?;
            return Ok(cache);
        }
        let record = 32 + dim * 4;
        let whole = (data.len() - header) / record;
        for r in data[header..header + whole * record].chunks_exact(record) {
            let key: [u8; 32] = r[..32].try_into().unwrap_or([0; 32]);
            let v = r[32..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            cache.map.insert(key, v);
        }
        if header + whole * record != data.len() {
            std::fs::OpenOptions::new().write(true).open(path)?.set_len((header + whole * record) as u64)?;
        }
        Ok(cache)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn key(&self, kind: EmbedKind, text: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.model.as_bytes());
        h.update([0, if kind == EmbedKind::Query { b'q' } else { b'p' }, 0]);
        h.update(text.as_bytes());
        h.finalize().into()
    }

    pub fn get(&self, kind: EmbedKind, text: &str) -> Option<&[f32]> {
        self.map.get(&self.key(kind, text)).map(Vec::as_slice)
    }

    /// Stores and appends one batch (one write, so concurrent appenders do not interleave records).
    pub fn insert(&mut self, kind: EmbedKind, items: &[(&str, &[f32])]) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(items.len() * (32 + self.dim * 4));
        for (text, v) in items {
            if v.len() != self.dim {
                return Err(std::io::Error::other(format!("a vector of {} values in a cache of dim {}", v.len(), self.dim)));
            }
            let key = self.key(kind, text);
            buf.extend_from_slice(&key);
            buf.extend(v.iter().flat_map(|x| x.to_le_bytes()));
            self.map.insert(key, v.to_vec());
        }
        std::fs::OpenOptions::new().append(true).open(&self.path)?.write_all(&buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_torn_tail_and_model_identity() {
        let dir = std::env::temp_dir().join(format!("aicc-embcache-{}", std::process::id()));
        let path = dir.join("c.bin");
        let _ = std::fs::remove_dir_all(&dir);
        let mut c = EmbedCache::open(&path, "m1", 3).unwrap();
        c.insert(EmbedKind::Query, &[("a", &[1.0, 2.0, 3.0]), ("b", &[4.0, 5.0, 6.0])]).unwrap();
        assert!(c.insert(EmbedKind::Query, &[("c", &[1.0])]).is_err());
        // A torn record at the end is dropped, the rest read back.
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(&[7; 20]).unwrap();
        let c = EmbedCache::open(&path, "m1", 3).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(EmbedKind::Query, "b"), Some(&[4.0, 5.0, 6.0][..]));
        assert_eq!(c.get(EmbedKind::Passage, "b"), None);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 12 + 2 * (32 + 12));
        // Another model's vectors are never returned; another dim starts afresh.
        assert_eq!(EmbedCache::open(&path, "m2", 3).unwrap().get(EmbedKind::Query, "a"), None);
        assert!(EmbedCache::open(&path, "m1", 4).unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
