//! `switchhead-compile` under faults: killed at any moment, on a full disk, into a directory it
//! cannot write. Each leaves either an error and nothing (the old file, if there was one,
//! untouched) or the whole output, never a partial or temporary file.
//!
//! The full-disk and read-only cases mount a small tmpfs, which needs root (CI runs as root);
//! elsewhere they print SKIPPED.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

fn tmp(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("compile-faults-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn compile(model: &Path, out: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchhead-compile"));
    cmd.arg(model).arg("-o").arg(out);
    cmd
}

fn run(mut cmd: Command) -> Output {
    cmd.output().expect("run switchhead-compile")
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A random-weight model of about 20 MB, so that writing takes a while (made once).
fn synth_model() -> &'static Path {
    static MODEL: OnceLock<PathBuf> = OnceLock::new();
    MODEL.get_or_init(|| synth(&tmp("model").join("model")))
}

fn synth(model: &Path) -> PathBuf {
    let o = Command::new(env!("CARGO_BIN_EXE_switchhead"))
        .args([
            "synth",
            "--preset",
            "c4-47m",
            "--n-layers",
            "2",
            "--vocab-size",
            "256",
            "-o",
        ])
        .arg(model)
        .output()
        .expect("run synth");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    model.to_path_buf()
}

/// Killed (SIGKILL) at moments spread over a whole run: the output directory then holds
/// nothing, or the complete file byte for byte.
#[test]
fn killed_mid_write_leaves_nothing_or_the_whole_file() {
    let model = synth_model();
    let work = tmp("kill");
    for ext in ["onnx", "shplan"] {
        let reference = work.join(format!("reference.{ext}"));
        let start = Instant::now();
        let o = run(compile(model, &reference));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let full = start.elapsed();
        let want = std::fs::read(&reference).expect("reference");
        let (mut killed, mut complete) = (0, 0);
        for step in 0..16u32 {
            let out_dir = tmp(&format!("kill-{ext}-{step}"));
            let out = out_dir.join(format!("out.{ext}"));
            let mut child = compile(model, &out)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn");
            std::thread::sleep(full * step / 14);
            let _ = child.kill();
            let status = child.wait().expect("wait");
            match entries(&out_dir).as_slice() {
                [] => killed += 1,
                [name] if *name == format!("out.{ext}") => {
                    let got = std::fs::read(&out).expect("output");
                    assert!(
                        got == want,
                        "{ext} step {step}: a partial output ({} bytes)",
                        got.len()
                    );
                    complete += 1;
                }
                other => panic!("{ext} step {step} ({status}): left {other:?}"),
            }
        }
        println!("{ext}: {killed} runs killed before the output appeared, {complete} complete");
        assert!(
            killed > 0,
            "{ext}: no kill landed before the end of the run"
        );
    }
}

/// A tmpfs of `size` mounted at a fresh directory (read-only with `ro`), unmounted on drop;
/// None where mounting is not allowed.
struct Mount(PathBuf);

impl Mount {
    fn new(tag: &str, size: &str, ro: bool) -> Option<Mount> {
        let dir = tmp(tag);
        let opts = format!("size={size}{}", if ro { ",ro" } else { "" });
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &opts, "tmpfs"])
            .arg(&dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
            return None;
        }
        Some(Mount(dir))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn expect_failure(o: &Output, out: &Path, reason: &str) {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "compiling to {} succeeded",
        out.display()
    );
    assert!(
        stderr.contains(&out.display().to_string()) && stderr.contains(reason),
        "stderr should name {} and say {reason:?}: {stderr}",
        out.display()
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// A disk with room for less than the output: one error line naming the file and the reason,
/// the old output untouched, nothing else left.
#[test]
fn full_disk_is_an_error_and_leaves_the_old_file() {
    let model = synth_model();
    let Some(mount) = Mount::new("full-mnt", "4m", false) else {
        return;
    };
    for ext in ["onnx", "shplan"] {
        let out = mount.0.join(format!("out.{ext}"));
        std::fs::write(&out, b"old output").expect("old output");
        let o = run(compile(model, &out));
        expect_failure(&o, &out, "No space left on device");
        assert_eq!(std::fs::read(&out).expect("old"), b"old output");
        assert_eq!(entries(&mount.0), [format!("out.{ext}")]);
        std::fs::remove_file(&out).expect("remove");
    }
}

/// An output directory that cannot be written: an error naming the file, nothing written.
#[test]
fn read_only_directory_is_an_error() {
    let model = synth_model();
    let Some(mount) = Mount::new("ro-mnt", "64m", true) else {
        return;
    };
    for ext in ["onnx", "shplan"] {
        let out = mount.0.join(format!("out.{ext}"));
        let o = run(compile(model, &out));
        expect_failure(&o, &out, "Read-only file system");
        assert!(entries(&mount.0).is_empty());
    }
}
