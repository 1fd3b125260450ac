//! BERT sentence embeddings against ../shared/golden/minilm/embeddings.jsonl (float64 reference
//! forward of all-MiniLM-L6-v2, mean pooling, L2-normalised; made outside Hearth). The model
//! folder comes from `HEARTH_TEST_EMBED_MODEL`.

use std::path::PathBuf;
use std::sync::OnceLock;

use hearth_models::{Bert, BertConfig, ModelError, Pooling, ThreadPool};
use hearth_testkit::{golden_rows, ids};

#[expect(
    clippy::unwrap_used,
    reason = "a model that does not load fails the tests loudly"
)]
fn model() -> Option<&'static Bert> {
    static MODEL: OnceLock<Option<Bert>> = OnceLock::new();
    let m = MODEL
        .get_or_init(|| {
            let dir = PathBuf::from(std::env::var_os("HEARTH_TEST_EMBED_MODEL")?);
            Some(
                Bert::load_dir(&dir)
                    .map_err(|e| format!("{}: {e}", dir.display()))
                    .unwrap(),
            )
        })
        .as_ref();
    if m.is_none() {
        eprintln!(
            "HEARTH_TEST_EMBED_MODEL is not set: skipping a test that needs the embedding model"
        );
    }
    m
}

fn cosine(a: &[f32], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| f64::from(x) * y).sum();
    let na: f64 = a.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    dot / (na * nb)
}

fn as_f64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

#[test]
fn golden_embeddings_in_one_batch() {
    let Some(bert) = model() else { return };
    let rows = golden_rows("minilm/embeddings.jsonl");
    let batch: Vec<Vec<u32>> = rows.iter().map(|r| ids(&r["token_ids"])).collect();
    for threads in [1, 2] {
        let pool = ThreadPool::new(threads).unwrap();
        let got = bert.embed(&pool, &batch).unwrap();
        assert_eq!(got.len(), rows.len());
        let mut worst = (f64::INFINITY, "");
        let mut sum = 0.0;
        for (r, e) in rows.iter().zip(&got) {
            assert_eq!(e.len(), 384);
            let want: Vec<f64> = r["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            let c = cosine(e, &want);
            sum += c;
            if c < worst.0 {
                worst = (c, r["text"].as_str().unwrap());
            }
            let norm: f64 = e.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
        }
        eprintln!(
            "{threads} thread(s): cosine min {:.12} ({:?}), mean {:.12}; 1 - min = {:.2e}",
            worst.0,
            worst.1,
            sum / rows.len() as f64,
            1.0 - worst.0
        );
        assert!(worst.0 >= 0.9999, "cosine {} for {:?}", worst.0, worst.1);
    }
}

#[test]
fn batching_does_not_change_results() {
    let Some(bert) = model() else { return };
    let rows = golden_rows("minilm/embeddings.jsonl");
    let batch: Vec<Vec<u32>> = rows.iter().map(|r| ids(&r["token_ids"])).collect();
    let pool = ThreadPool::new(2).unwrap();
    let together = bert.embed(&pool, &batch).unwrap();
    for (seq, t) in batch.iter().zip(&together) {
        let alone = bert.embed(&pool, std::slice::from_ref(seq)).unwrap();
        let c = cosine(&alone[0], &as_f64(t));
        assert!(
            c > 0.999_999,
            "cosine {c} between alone and batched for {seq:?}"
        );
    }
}

#[test]
fn sanity_pair_similarity() {
    let Some(bert) = model() else { return };
    let rows = golden_rows("minilm/embeddings.jsonl");
    assert_eq!(rows[0]["text"], "A man is eating food.");
    assert_eq!(rows[1]["text"], "A man is eating a piece of bread.");
    let pool = ThreadPool::new(1).unwrap();
    let e = bert
        .embed(
            &pool,
            &[ids(&rows[0]["token_ids"]), ids(&rows[1]["token_ids"])],
        )
        .unwrap();
    let c = cosine(&e[0], &as_f64(&e[1]));
    eprintln!("sanity pair cosine {c:.5}");
    assert!(
        (c - 0.7553).abs() < 5e-4,
        "cosine {c}, sentence-transformers documents 0.7553"
    );
}

#[test]
fn bad_batches_are_refused() {
    let Some(bert) = model() else { return };
    let pool = ThreadPool::new(1).unwrap();
    let check = |batch: &[Vec<u32>], ok: fn(&ModelError) -> bool| {
        let e = bert.embed(&pool, batch).unwrap_err();
        assert!(ok(&e), "{e:?}");
    };
    check(&[vec![101, 102], vec![]], |e| {
        matches!(e, ModelError::EmptyInput)
    });
    check(&[vec![101; 513]], |e| {
        matches!(
            e,
            ModelError::ContextFull {
                limit: 512,
                needed: 513
            }
        )
    });
    check(&[vec![101, 30522, 102]], |e| {
        matches!(e, ModelError::BadToken(30522))
    });
    assert!(bert.embed(&pool, &[]).unwrap().is_empty());
    assert_eq!(
        bert.max_tokens(),
        256,
        "sentence_bert_config.json's max_seq_length"
    );
    assert_eq!(
        bert.embed(&pool, &[vec![101; 512]]).unwrap()[0].len(),
        bert.dim()
    );
}

const CONFIG: &str = r#"{"model_type": "bert", "hidden_size": 384, "num_attention_heads": 12,
  "num_hidden_layers": 6, "intermediate_size": 1536, "max_position_embeddings": 512,
  "vocab_size": 30522, "type_vocab_size": 2, "layer_norm_eps": 1e-12, "hidden_act": "gelu"}"#;

#[test]
fn config_and_pooling() {
    let c = BertConfig::from_json(CONFIG, None).unwrap();
    assert_eq!(
        (c.hidden_size, c.num_heads, c.num_layers, c.pooling),
        (384, 12, 6, Pooling::Mean)
    );
    assert_eq!(c.max_seq_length, 512);
    let c2 = c
        .clone()
        .with_sentence_config(r#"{"max_seq_length": 256}"#)
        .unwrap();
    assert_eq!(c2.max_seq_length, 256);
    let c2 = c
        .clone()
        .with_sentence_config(r#"{"max_seq_length": 4096}"#)
        .unwrap();
    assert_eq!(c2.max_seq_length, 512, "capped at the position table");
    assert!(
        c.clone()
            .with_sentence_config(r#"{"max_seq_length": -1}"#)
            .is_err()
    );
    let cls = r#"{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}"#;
    assert_eq!(
        BertConfig::from_json(CONFIG, Some(cls)).unwrap().pooling,
        Pooling::Cls
    );
    for (config, pooling, why) in [
        (CONFIG.replace("384", "385"), None, "multiple"),
        (CONFIG.replace("\"gelu\"", "\"relu\""), None, "hidden_act"),
        (CONFIG.replace("30522", "0"), None, "vocab_size"),
        (
            CONFIG.replace("30522", "99999999999999999999"),
            None,
            "vocab_size",
        ),
        (CONFIG.replace("\"bert\"", "\"roberta\""), None, "roberta"),
        (CONFIG[..40].to_owned(), None, "JSON"),
        (
            CONFIG.to_owned(),
            Some(r#"{"pooling_mode_mean_tokens": false}"#),
            "no pooling",
        ),
        (
            CONFIG.to_owned(),
            Some(r#"{"pooling_mode_mean_tokens": true, "pooling_mode_max_tokens": true}"#),
            "several",
        ),
    ] {
        let e = BertConfig::from_json(&config, pooling)
            .unwrap_err()
            .to_string();
        assert!(e.contains(why), "{e:?} lacks {why:?}");
    }
}
