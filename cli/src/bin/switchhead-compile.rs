//! `switchhead-compile`: lowers a checkpoint to ONNX or a native plan (compiler issue).

fn main() -> std::process::ExitCode {
    eprintln!("error: switchhead-compile: ONNX and plan emission are not implemented yet");
    std::process::ExitCode::from(2)
}
