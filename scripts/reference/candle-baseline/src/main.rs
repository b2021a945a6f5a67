// Plain candle-transformers quantized_qwen2 on a GGUF: N prompt tokens, K greedy decode steps, three runs (the first includes weight repacking).
use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_qwen2::ModelWeights;
use std::time::Instant;

fn main() {
    let path = std::env::args().nth(1).unwrap();
    let n: usize = std::env::args().nth(2).map(|s| s.parse().unwrap()).unwrap_or(400);
    let k: usize = std::env::args().nth(3).map(|s| s.parse().unwrap()).unwrap_or(128);
    let mut f = std::fs::File::open(&path).unwrap();
    let ct = gguf_file::Content::read(&mut f).unwrap();
    let dev = Device::Cpu;
    let mut model = ModelWeights::from_gguf(ct, &mut f, &dev).unwrap();
    let prompt: Vec<u32> = (0..n as u32).map(|i| 1000 + (i * 37) % 20000).collect();
    for rep in 0..3 {
        let t = Instant::now();
        let x = Tensor::new(prompt.as_slice(), &dev).unwrap().unsqueeze(0).unwrap();
        let logits = model.forward(&x, 0).unwrap();
        let mut next = logits.squeeze(0).unwrap().argmax(0).unwrap().to_scalar::<u32>().unwrap();
        let prefill = t.elapsed().as_secs_f64();
        let t = Instant::now();
        for i in 0..k {
            let x = Tensor::new(&[next], &dev).unwrap().unsqueeze(0).unwrap();
            let logits = model.forward(&x, n + i).unwrap();
            next = logits.squeeze(0).unwrap().argmax(0).unwrap().to_scalar::<u32>().unwrap();
        }
        let decode = t.elapsed().as_secs_f64();
        println!("rep {rep}: prefill {:.1} tok/s, decode {:.1} tok/s", n as f64 / prefill, k as f64 / decode);
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    println!("{}", status.lines().find(|l| l.starts_with("VmHWM")).unwrap());
}
