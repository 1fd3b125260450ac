//! Load and encode timings: `cargo run --release -p hearth-tokenizer --example tokbench -- MODEL.gguf`

use std::error::Error;
use std::time::Instant;

use hearth_gguf::GgufFile;
use hearth_tokenizer::Tokenizer;

const SAMPLE: &str = "Once upon a time, there was a little robot who wanted to learn how to paint. \
It's 5:30pm — time for tea… café naïve résumé, 日本語のテキストです。 emoji 😀🎉👍🏽!\n\
fn main() {\n    println!(\"hi {}\", 1 + 2);\n}\n\
The year 1999 and 2000 and 20000; 3.14159 2.71828 1e-9 -42 +7. ";

fn main() -> Result<(), Box<dyn Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: tokbench MODEL.gguf")?;
    let file = GgufFile::open(path.as_ref())?;
    let mut best_load = f64::MAX;
    let mut tok = None;
    for _ in 0..5 {
        let t = Instant::now();
        let k = Tokenizer::from_gguf(&file)?;
        best_load = best_load.min(t.elapsed().as_secs_f64());
        tok = Some(k);
    }
    let tok = tok.ok_or("no tokenizer")?;
    let text = SAMPLE.repeat(40);
    let n = tok.encode(&text, true, true).len();
    let runs = 50;
    let t = Instant::now();
    for _ in 0..runs {
        std::hint::black_box(tok.encode(std::hint::black_box(&text), true, true));
    }
    let per_encode = t.elapsed().as_secs_f64() / f64::from(runs);
    let t = Instant::now();
    let ids = tok.encode(&text, false, false);
    for _ in 0..runs {
        std::hint::black_box(tok.decode(std::hint::black_box(&ids), false));
    }
    let per_decode = t.elapsed().as_secs_f64() / f64::from(runs);
    println!(
        "vocab {} tokens; load (best of 5) {:.1} ms",
        tok.vocab_size(),
        best_load * 1e3
    );
    println!(
        "encode {} bytes -> {n} tokens: {:.0} us ({:.1} us per 100 tokens); decode {:.0} us",
        text.len(),
        per_encode * 1e6,
        per_encode * 1e6 * 100.0 / n as f64,
        per_decode * 1e6
    );
    Ok(())
}
