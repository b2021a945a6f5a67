//! Article embeddings, cached by (model, kind, text) so that a new version
//! re-embeds only the articles that changed, and a restart re-embeds nothing.
//!
//! On disk: one append-only file per model, records of a 16-byte key and
//! `dim` little-endian f32s. A torn last record (a kill mid-write) is dropped
//! at load; nothing else can be half-written.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aicc_core::{EmbedKind, Embedder, KbError, ModelError};
use sha2::{Digest, Sha256};

pub type Key = [u8; 16];

pub struct EmbeddingCache {
    dim: usize,
    path: Option<PathBuf>,
    map: Mutex<HashMap<Key, Arc<[f32]>>>,
}

/// Texts embedded per call: the worker batches them into one forward pass.
const BATCH: usize = 32;

impl EmbeddingCache {
    /// Opens (or starts) the cache of `model` under `dir`; `None` keeps it in memory.
    pub fn open(dir: Option<&Path>, model: &str, dim: usize) -> std::io::Result<Self> {
        let path = dir.map(|d| d.join(format!("embeddings-{model}.bin")));
        let mut map = HashMap::new();
        if let Some(path) = &path {
            std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
            if let Ok(mut f) = std::fs::File::open(path) {
                let mut buf = Vec::new();
                f.read_to_end(&mut buf)?;
                let record = 16 + dim * 4;
                let whole = buf.len() / record * record;
                for r in buf[..whole].chunks_exact(record) {
                    let key: Key = r[..16].try_into().expect("16 bytes");
                    let v: Vec<f32> = r[16..].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
                    map.insert(key, Arc::from(v));
                }
                if whole != buf.len() {
                    // Cut the torn tail so later appends stay aligned.
                    std::fs::OpenOptions::new().write(true).open(path)?.set_len(whole as u64)?;
                }
            }
        }
        Ok(EmbeddingCache { dim, path, map: Mutex::new(map) })
    }

    pub fn key(kind: EmbedKind, text: &str) -> Key {
        let mut h = Sha256::new();
        h.update(if kind == EmbedKind::Query { b"q\0" } else { b"p\0" });
        h.update(text.as_bytes());
        h.finalize()[..16].try_into().expect("16 bytes")
    }

    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, key: &Key) -> Option<Arc<[f32]>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).get(key).cloned()
    }

    fn put(&self, items: Vec<(Key, Vec<f32>)>) -> std::io::Result<()> {
        let mut bytes = Vec::with_capacity(items.len() * (16 + self.dim * 4));
        for (k, v) in &items {
            bytes.extend_from_slice(k);
            v.iter().for_each(|x| bytes.extend_from_slice(&x.to_le_bytes()));
        }
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(path) = &self.path {
            // Under the lock: records from two writers never interleave.
            std::fs::OpenOptions::new().create(true).append(true).open(path)?.write_all(&bytes)?;
        }
        for (k, v) in items {
            map.insert(k, Arc::from(v));
        }
        Ok(())
    }

    /// Vectors for `texts`, embedding only those not cached. `progress` gets
    /// (done, total) after each batch.
    pub async fn embed_all(
        &self,
        embedder: &dyn Embedder,
        texts: &[String],
        kind: EmbedKind,
        progress: &(dyn Fn(usize, usize) + Send + Sync),
    ) -> Result<Vec<Vec<f32>>, KbError> {
        let keys: Vec<Key> = texts.iter().map(|t| Self::key(kind, t)).collect();
        let mut missing: Vec<usize> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (i, k) in keys.iter().enumerate() {
            if self.get(k).is_none() && seen.insert(*k) {
                missing.push(i);
            }
        }
        let mut done = 0;
        for chunk in missing.chunks(BATCH) {
            let batch: Vec<String> = chunk.iter().map(|&i| texts[i].clone()).collect();
            let vectors = embed_with_retry(embedder, batch, kind).await?;
            self.put(chunk.iter().map(|&i| keys[i]).zip(vectors).collect())
                .map_err(|e| KbError::Failed(format!("cannot write the embedding cache: {e}")))?;
            done += chunk.len();
            progress(done, missing.len());
        }
        keys.iter()
            .map(|k| self.get(k).map(|v| v.to_vec()).ok_or_else(|| KbError::Failed("embedding missing after embedding".into())))
            .collect()
    }

    /// Each article's own question as a query, with the article's index: the
    /// adapter's `questions` (`adapter::train`).
    pub async fn article_questions(
        &self,
        embedder: &dyn Embedder,
        articles: &[aicc_core::Article],
        progress: &(dyn Fn(usize, usize) + Send + Sync),
    ) -> Result<Vec<(Vec<f32>, usize)>, KbError> {
        let texts: Vec<String> = articles.iter().map(|a| a.question.clone()).collect();
        Ok(self.embed_all(embedder, &texts, EmbedKind::Query, progress).await?.into_iter().zip(0..).collect())
    }
}

/// Bulk indexing shares the model with live traffic: a full queue means wait
/// a little, not fail the whole import.
async fn embed_with_retry(embedder: &dyn Embedder, texts: Vec<String>, kind: EmbedKind) -> Result<Vec<Vec<f32>>, KbError> {
    let mut wait = Duration::from_millis(20);
    for _ in 0..50 {
        match embedder.embed(texts.clone(), kind).await {
            Ok(v) => return Ok(v),
            Err(ModelError::Overloaded) => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_millis(500));
            }
            Err(ModelError::Unavailable(e)) => return Err(KbError::Unavailable(format!("embedder: {e}"))),
            Err(ModelError::Failed(e) | ModelError::InvalidRequest(e)) => return Err(KbError::Failed(format!("embedder: {e}"))),
        }
    }
    Err(KbError::Overloaded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting(AtomicUsize);
    #[async_trait::async_trait]
    impl Embedder for Counting {
        fn name(&self) -> &str {
            "counting"
        }
        fn dim(&self) -> usize {
            2
        }
        async fn embed(&self, texts: Vec<String>, _: EmbedKind) -> Result<Vec<Vec<f32>>, ModelError> {
            self.0.fetch_add(texts.len(), Ordering::SeqCst);
            Ok(texts.iter().map(|t| vec![t.len() as f32, 1.0]).collect())
        }
    }

    #[tokio::test]
    async fn embeds_each_text_once_and_survives_a_torn_record() {
        let dir = tempfile::tempdir().unwrap();
        let e = Counting(AtomicUsize::new(0));
        let texts: Vec<String> = ["a", "bb", "a", "ccc"].iter().map(|s| s.to_string()).collect();
        let cache = EmbeddingCache::open(Some(dir.path()), "m", 2).unwrap();
        let v = cache.embed_all(&e, &texts, EmbedKind::Query, &|_, _| {}).await.unwrap();
        assert_eq!(v[1], vec![2.0, 1.0]);
        assert_eq!(e.0.load(Ordering::SeqCst), 3, "the duplicate is embedded once");
        // A kill mid-append leaves a partial record: it is dropped, the rest kept.
        let path = dir.path().join("embeddings-m.bin");
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(&[1, 2, 3]).unwrap();
        let again = EmbeddingCache::open(Some(dir.path()), "m", 2).unwrap();
        assert_eq!(again.len(), 3);
        again.embed_all(&e, &texts, EmbedKind::Query, &|_, _| {}).await.unwrap();
        assert_eq!(e.0.load(Ordering::SeqCst), 3, "nothing re-embedded after a restart");
        // Passages and queries of one text are different vectors.
        again.embed_all(&e, &texts[..1], EmbedKind::Passage, &|_, _| {}).await.unwrap();
        assert_eq!(e.0.load(Ordering::SeqCst), 4);
    }
}
