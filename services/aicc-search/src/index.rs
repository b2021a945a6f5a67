//! One knowledge version, searchable: its articles, their BM25 index, their
//! vectors, and (when the tenant has one) the fine-tuned query adapter.
//! Immutable once built; a publish swaps whole `VersionIndex`es.

use std::collections::HashMap;
use std::sync::Arc;

use aicc_core::{Article, EmbedKind, HitScores, KbHit};

use crate::adapter::Adapter;
use crate::fusion::{Fusion, Signals};
use crate::lexical::LexicalIndex;
use crate::vector::{FlatIndex, VectorIndex};

/// How many candidates each retriever contributes to fusion.
const CANDIDATES: usize = 50;
/// Ranking bonus for an article in the query's language: a tenant's adapter
/// maps messages onto intents, and an intent has an article per language;
/// the customer should get the one in their language first.
const SAME_LANGUAGE_BONUS: f32 = 0.15;

/// What of an article is embedded, and as what: the question alone as a query
/// (E5's symmetric use), or question and answer as a passage. The passage
/// wins on every set measured (docs/benchmarks.md: +5 to +7 points of
/// zero-shot hybrid recall@1), at the price of longer texts to embed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassageText {
    Question,
    QuestionAnswer,
}

impl PassageText {
    pub const DEFAULT: PassageText = PassageText::QuestionAnswer;

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "question" => Some(Self::Question),
            "question+answer" => Some(Self::QuestionAnswer),
            _ => None,
        }
    }

    pub fn text(&self, a: &Article) -> String {
        match self {
            Self::Question => a.question.clone(),
            Self::QuestionAnswer => format!("{}\n{}", a.question, a.answer),
        }
    }

    pub fn kind(&self) -> EmbedKind {
        match self {
            Self::Question => EmbedKind::Query,
            Self::QuestionAnswer => EmbedKind::Passage,
        }
    }
}

pub struct Dense {
    /// The embedder the vectors came from; queries must use the same one.
    pub model: String,
    pub index: Box<dyn VectorIndex>,
}

pub struct VersionIndex {
    pub version: i64,
    pub articles: Vec<Article>,
    /// Position of each article id in `articles`.
    by_id: HashMap<String, u32>,
    lexical: LexicalIndex,
    pub dense: Option<Dense>,
    adapter: Option<Arc<Adapter>>,
    /// Rows whose articles the adapter never learned (`Adapter::learned`).
    unlearned: Vec<bool>,
    pub fusion: Fusion,
}

/// Which retrievers a search uses (all of them, unless evaluating one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retrievers {
    Hybrid,
    Bm25,
    Dense,
}

impl VersionIndex {
    pub fn build(version: i64, articles: Vec<Article>) -> anyhow::Result<Self> {
        let lexical = LexicalIndex::build(&articles)?;
        let by_id = articles.iter().enumerate().map(|(i, a)| (a.id.clone(), i as u32)).collect();
        Ok(VersionIndex {
            version,
            articles,
            by_id,
            lexical,
            dense: None,
            adapter: None,
            unlearned: Vec::new(),
            fusion: Fusion::default(),
        })
    }

    pub fn with_vectors(mut self, model: &str, dim: usize, vectors: &[Vec<f32>]) -> Self {
        self.dense = Some(Dense { model: model.to_string(), index: Box::new(FlatIndex::new(dim, vectors)) });
        self
    }

    pub fn position(&self, id: &str) -> Option<u32> {
        self.by_id.get(id).copied()
    }

    pub fn set_adapter(&mut self, adapter: Option<Arc<Adapter>>) {
        self.unlearned = match &adapter {
            Some(a) => self.articles.iter().map(|x| !a.learned(x.intent.as_deref())).collect(),
            None => Vec::new(),
        };
        self.adapter = adapter;
    }

    pub fn adapter(&self) -> Option<&Arc<Adapter>> {
        self.adapter.as_ref()
    }

    /// The query vector as the dense retriever should see it (adapter applied).
    pub fn adapt(&self, query_vector: &[f32]) -> Vec<f32> {
        match &self.adapter {
            Some(a) => a.apply(query_vector),
            None => query_vector.to_vec(),
        }
    }

    /// Scored in the encoder's own space, not the adapter's.
    fn unlearned(&self, row: u32) -> bool {
        self.unlearned.get(row as usize).copied().unwrap_or(false)
    }

    /// Best hits first. `query_vector` is the raw query embedding (None when no
    /// embedder is available: BM25 alone then).
    pub fn search(&self, text: &str, query_vector: Option<&[f32]>, k: usize, use_: Retrievers) -> anyhow::Result<Vec<KbHit>> {
        // Fusion needs a deeper list from each retriever than it returns.
        let n = if use_ == Retrievers::Hybrid { CANDIDATES.max(k) } else { k };
        let mut signals: HashMap<u32, Signals> = HashMap::new();
        if use_ != Retrievers::Dense {
            for (rank, (row, s)) in self.lexical.search(text, n)?.into_iter().enumerate() {
                let e = signals.entry(row).or_default();
                e.bm25 = Some(s);
                e.bm25_rank = Some(rank);
            }
        }
        let dense = match (&self.dense, query_vector) {
            (Some(d), Some(q)) if use_ != Retrievers::Bm25 && q.len() == d.index.dim() => Some((d, self.adapt(q), q)),
            _ => None,
        };
        if let Some((d, adapted, raw)) = &dense {
            // Learned articles by the adapted query; the others (added since
            // the adapter was trained) by the raw one, as without an adapter.
            let mut lists = vec![(adapted.as_slice(), false)];
            if self.unlearned.iter().any(|&u| u) {
                lists.push((*raw, true));
            }
            for (q, unlearned) in lists {
                let found = d.index.search(q, n).into_iter().filter(|(row, _)| self.unlearned(*row) == unlearned);
                for (rank, (row, cos)) in found.enumerate() {
                    let e = signals.entry(row).or_default();
                    e.dense = Some(cos);
                    e.dense_rank = Some(rank);
                }
            }
            // BM25's finds get their exact cosine too.
            for (row, e) in signals.iter_mut() {
                if e.dense.is_none() {
                    let q = if self.unlearned(*row) { *raw } else { adapted.as_slice() };
                    e.dense = Some(d.index.score(q, *row));
                }
            }
        }
        let dense_on = dense.is_some();
        let adapted_fusion = match &self.adapter {
            Some(a) => self.fusion.with_dense_range(a.metrics.cos_floor, a.metrics.cos_ceil),
            None => self.fusion,
        };
        let fusion = |row: u32| if self.unlearned(row) { self.fusion } else { adapted_fusion };
        let language = crate::import::detect_language(text);
        let mut ranked: Vec<(u32, Signals, f32)> = signals
            .into_iter()
            .map(|(row, s)| {
                let mut r = fusion(row).rank_score(&s, dense_on);
                if self.articles[row as usize].language == language {
                    r += SAME_LANGUAGE_BONUS;
                }
                (row, s, r)
            })
            .collect();
        ranked.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
        ranked.truncate(k);
        Ok(ranked
            .into_iter()
            .map(|(row, s, _)| {
                let a = &self.articles[row as usize];
                let mut retrievers = Vec::new();
                if s.bm25_rank.is_some() {
                    retrievers.push("bm25".to_string());
                }
                if s.dense_rank.is_some() {
                    retrievers.push("dense".to_string());
                }
                let hybrid = fusion(row).confidence(&s, dense_on);
                KbHit {
                    article_id: a.id.clone(),
                    question: a.question.clone(),
                    answer: a.answer.clone(),
                    intent: a.intent.clone(),
                    language: a.language.clone(),
                    score: hybrid,
                    scores: HitScores { bm25: s.bm25, dense: if dense_on { s.dense } else { None }, hybrid },
                    retrievers,
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::AdapterMetrics;

    fn article(id: &str, intent: &str, question: &str) -> Article {
        Article { id: id.into(), intent: Some(intent.into()), language: "en".into(), question: question.into(), answer: "a".into(), tags: vec![] }
    }

    /// An adapter that turns every query towards axis 0 (article "old").
    fn pulling_adapter(intents: Vec<String>) -> Arc<Adapter> {
        let mut weight = vec![0.0; 9];
        weight[1] = 50.0;
        weight[2] = 50.0;
        let metrics = AdapterMetrics { cos_floor: 0.2, cos_ceil: 0.9, ..Default::default() };
        Arc::new(Adapter { dim: 3, weight, encoder: "e".into(), metrics, intents })
    }

    #[test]
    fn articles_the_adapter_never_learned_are_scored_without_it() {
        let articles = vec![article("old", "known", "card lost"), article("new", "added_later", "gold savings event")];
        let vectors = vec![vec![1.0, 0.0, 0.0], vec![0.0, 0.0, 1.0]];
        let q = [0.0, 0.0, 1.0]; // the new article's own question
        let search = |intents: Vec<String>| {
            let mut index = VersionIndex::build(1, articles.clone()).unwrap().with_vectors("e", 3, &vectors);
            index.set_adapter(Some(pulling_adapter(intents)));
            index.search("gold savings event", Some(&q), 2, Retrievers::Hybrid).unwrap()
        };
        let hits = search(vec!["known".into()]);
        let new = hits.iter().find(|h| h.article_id == "new").unwrap();
        assert!((new.scores.dense.unwrap() - 1.0).abs() < 1e-5, "the raw cosine: {hits:?}");
        assert!(new.score > 0.6, "the zero-shot blend: {hits:?}");
        // An adapter stored without its intents counts every article as learned.
        let hits = search(vec![]);
        let new = hits.iter().find(|h| h.article_id == "new").unwrap();
        assert!(new.scores.dense.unwrap() < 0.5, "scored through the adapter: {hits:?}");
    }
}
