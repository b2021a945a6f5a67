//! BM25 over one knowledge version with tantivy. The index lives in memory: it
//! is derived from the Store's articles and rebuilt in seconds even for 100k
//! of them (the expensive derived part, the embeddings, is cached on disk).
//!
//! Customer text never goes through tantivy's query parser: it is analysed
//! into terms and turned into a query directly, so `"`, `:`, `(`, `*` or `~`
//! are just characters.

use std::collections::BTreeSet;

use aicc_core::Article;
use tantivy::query::{BooleanQuery, BoostQuery, Occur, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST};
use tantivy::{doc, Index, IndexReader, ReloadPolicy, TantivyDocument, Term};

use crate::analysis::{self, ANALYZER};

/// Field boosts: a customer's words match the FAQ question best; tags are
/// curated keywords; the answer is long and matches a lot of things weakly.
const BOOST_QUESTION: f32 = 2.0;
const BOOST_TAGS: f32 = 1.5;
const BOOST_ANSWER: f32 = 0.6;
/// Distinct query terms used; the rest of a pasted essay adds nothing.
const MAX_TERMS: usize = 64;

pub struct LexicalIndex {
    reader: IndexReader,
    question: Field,
    answer: Field,
    tags: Field,
}

impl LexicalIndex {
    pub fn build(articles: &[Article]) -> tantivy::Result<Self> {
        let mut sb = Schema::builder();
        let text = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default().set_tokenizer(ANALYZER).set_index_option(IndexRecordOption::WithFreqs),
        );
        let question = sb.add_text_field("question", text.clone());
        let answer = sb.add_text_field("answer", text.clone());
        let tags = sb.add_text_field("tags", text);
        let ord = sb.add_u64_field("ord", FAST);
        let index = Index::create_in_ram(sb.build());
        index.tokenizers().register(ANALYZER, analysis::analyzer());
        // One thread: the index is small and the other core serves requests.
        let mut writer = index.writer_with_num_threads::<TantivyDocument>(1, 64 << 20)?;
        for (i, a) in articles.iter().enumerate() {
            writer.add_document(doc!(
                question => a.question.as_str(),
                answer => a.answer.as_str(),
                tags => a.tags.join(" "),
                ord => i as u64,
            ))?;
        }
        writer.commit()?;
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        Ok(LexicalIndex { reader, question, answer, tags })
    }

    /// The best `k` articles as (position in the version's article list, BM25 score).
    pub fn search(&self, text: &str, k: usize) -> tantivy::Result<Vec<(u32, f32)>> {
        let terms: BTreeSet<String> = analysis::terms(text).into_iter().take(MAX_TERMS * 4).collect();
        if terms.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for term in terms.iter().take(MAX_TERMS) {
            for (field, boost) in [(self.question, BOOST_QUESTION), (self.answer, BOOST_ANSWER), (self.tags, BOOST_TAGS)] {
                let q = TermQuery::new(Term::from_field_text(field, term), IndexRecordOption::WithFreqs);
                clauses.push((Occur::Should, Box::new(BoostQuery::new(Box::new(q), boost))));
            }
        }
        let searcher = self.reader.searcher();
        let query = BooleanQuery::new(clauses);
        let top = searcher.search(&query, &Exhaustive(k))?;
        let mut out = Vec::with_capacity(top.len());
        // One column handle per segment, not per hit.
        let mut columns: Vec<Option<tantivy::columnar::Column<u64>>> = vec![None; searcher.segment_readers().len()];
        for (score, addr) in top {
            let column = match &mut columns[addr.segment_ord as usize] {
                Some(c) => c,
                slot => slot.insert(searcher.segment_reader(addr.segment_ord).fast_fields().u64("ord")?),
            };
            if let Some(ord) = column.first(addr.doc_id) {
                out.push((ord as u32, score));
            }
        }
        Ok(out)
    }
}

/// The best `k` by score, from every matching document. tantivy's own top-k
/// collector prunes with block-max WAND, which wins for a few terms and
/// loses badly for many: a pasted 35-term complaint is ~100 term scorers
/// (3 fields each), and WAND re-sorts them at every pivot (30 ms at 100k
/// articles, against ~2 ms for the plain union, which scores postings in
/// blocks of 4,096 documents).
struct Exhaustive(usize);

struct ExhaustiveSegment {
    k: usize,
    ord: u32,
    hits: Vec<(f32, u32)>,
    /// Scores at or below this cannot enter the top k any more.
    floor: f32,
}

impl tantivy::collector::Collector for Exhaustive {
    type Fruit = Vec<(f32, tantivy::DocAddress)>;
    type Child = ExhaustiveSegment;

    fn for_segment(&self, ord: u32, _: &tantivy::SegmentReader) -> tantivy::Result<ExhaustiveSegment> {
        Ok(ExhaustiveSegment { k: self.0, ord, hits: Vec::with_capacity(2 * self.0), floor: f32::MIN })
    }

    fn requires_scoring(&self) -> bool {
        true
    }

    fn merge_fruits(&self, segments: Vec<Self::Fruit>) -> tantivy::Result<Self::Fruit> {
        let mut all: Vec<_> = segments.into_iter().flatten().collect();
        all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        all.truncate(self.0);
        Ok(all)
    }
}

impl tantivy::collector::SegmentCollector for ExhaustiveSegment {
    type Fruit = Vec<(f32, tantivy::DocAddress)>;

    fn collect(&mut self, doc: u32, score: f32) {
        if score <= self.floor {
            return;
        }
        self.hits.push((score, doc));
        if self.hits.len() == 2 * self.k {
            // Keep the best k; the k-th becomes the floor.
            self.hits.select_nth_unstable_by(self.k - 1, |a, b| b.0.total_cmp(&a.0));
            self.hits.truncate(self.k);
            self.floor = self.hits.iter().map(|h| h.0).fold(f32::MAX, f32::min);
        }
    }

    fn harvest(mut self) -> Self::Fruit {
        self.hits.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        self.hits.truncate(self.k);
        self.hits.into_iter().map(|(s, d)| (s, tantivy::DocAddress::new(self.ord, d))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn article(id: &str, language: &str, question: &str, answer: &str, tags: &[&str]) -> Article {
        Article {
            id: id.into(),
            intent: None,
            language: language.into(),
            question: question.into(),
            answer: answer.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn kb() -> Vec<Article> {
        vec![
            article("lost-en", "en", "I lost my card, what should I do?", "Freeze it in the app.", &["card", "security"]),
            article("lost-ko", "ko", "카드를 분실했어요. 어떻게 해야 하나요?", "앱에서 카드를 정지해 주세요.", &["카드"]),
            article("fee-en", "en", "What are the fees for transfers abroad?", "International transfers cost 1%.", &["fees"]),
            article("fee-ko", "ko", "해외 송금 수수료는 얼마인가요?", "해외 송금 수수료는 1%입니다.", &["수수료"]),
        ]
    }

    #[test]
    fn finds_english_and_korean_questions() {
        let index = LexicalIndex::build(&kb()).unwrap();
        assert_eq!(index.search("lost cards", 2).unwrap()[0].0, 0);
        assert_eq!(index.search("카드를 잃어버렸어요 분실", 2).unwrap()[0].0, 1);
        assert_eq!(index.search("송금 수수료", 2).unwrap()[0].0, 3);
        assert_eq!(index.search("transfer fee", 2).unwrap()[0].0, 2);
    }

    #[test]
    fn syntax_characters_and_empty_queries_are_harmless() {
        let index = LexicalIndex::build(&kb()).unwrap();
        for q in ["\"card", "card:lost", "(card", "card*", "card~2", "AND OR NOT", "+-&&||!{}[]^"] {
            index.search(q, 5).unwrap();
        }
        assert!(index.search("", 5).unwrap().is_empty());
        assert!(index.search("?!🙂", 5).unwrap().is_empty());
        let long = "card ".repeat(2000);
        assert_eq!(index.search(&long, 5).unwrap()[0].0, 0);
    }

    /// The exhaustive collector returns what tantivy's pruning top-k does.
    #[test]
    fn the_exhaustive_top_k_equals_tantivys_own() {
        let words = ["card", "lost", "fee", "transfer", "pin", "atm", "cash", "limit", "카드", "송금", "수수료", "분실"];
        let mut x = 17u64;
        let mut pick = |n: usize| {
            (0..n)
                .map(|_| {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    words[(x >> 33) as usize % words.len()]
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        let articles: Vec<Article> =
            (0..3000).map(|i| article(&format!("a{i}"), "en", &pick(8), &pick(30), &[])).collect();
        let index = LexicalIndex::build(&articles).unwrap();
        let searcher = index.reader.searcher();
        for text in ["card lost", "atm cash limit fee transfer pin", "카드 분실 송금", "pin"] {
            let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
            for term in analysis::terms(text) {
                for (field, boost) in [(index.question, BOOST_QUESTION), (index.answer, BOOST_ANSWER), (index.tags, BOOST_TAGS)] {
                    let q = TermQuery::new(Term::from_field_text(field, &term), IndexRecordOption::WithFreqs);
                    clauses.push((Occur::Should, Box::new(BoostQuery::new(Box::new(q), boost))));
                }
            }
            let query = BooleanQuery::new(clauses);
            let theirs = searcher.search(&query, &tantivy::collector::TopDocs::with_limit(10).order_by_score()).unwrap();
            let ours = searcher.search(&query, &Exhaustive(10)).unwrap();
            // The same documents in the same order; the scores to the last bits
            // (the two add the clauses' scores in different orders).
            assert_eq!(ours.iter().map(|h| h.1).collect::<Vec<_>>(), theirs.iter().map(|h| h.1).collect::<Vec<_>>(), "{text}");
            assert!(ours.iter().zip(&theirs).all(|(a, b)| (a.0 - b.0).abs() < 1e-4), "{text}");
        }
    }

    #[test]
    fn an_empty_knowledge_base_finds_nothing() {
        let index = LexicalIndex::build(&[]).unwrap();
        assert!(index.search("card", 5).unwrap().is_empty());
    }
}
