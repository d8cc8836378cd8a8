//! `build-image`: vcsync's container image as an OCI archive, without a
//! container daemon. See README, "Container image".

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, Result, ensure};
use clap::Parser;
use vcsync_image::{DEBIAN_PACKAGES, Image, Options};

/// Builds vcsync's image: the dist binary on a base of Debian packages.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The binary to ship; without it, `cargo build --locked --profile dist -p vcsync` builds it.
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Where the Debian packages are (a cache: missing ones are downloaded into it with `apt-get download`); default: a temporary directory.
    #[arg(long)]
    debs: Option<PathBuf>,
    /// The OCI archive to write (an image layout in one tar).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write the image layout unpacked into this directory.
    #[arg(long)]
    layout: Option<PathBuf>,
    /// Also write the image's files into this directory (what `image/Containerfile` copies).
    #[arg(long)]
    rootfs: Option<PathBuf>,
    /// NAME:TAG recorded in the archive (index annotation, Docker's manifest.json).
    #[arg(long, default_value_t = vcsync_image::default_tag())]
    tag: String,
    /// The org.opencontainers.image.source label; default: the git remote `origin`, if any.
    #[arg(long)]
    source: Option<String>,
    /// The org.opencontainers.image.revision label; default: the git commit, if any.
    #[arg(long)]
    revision: Option<String>,
    /// Every mtime in the image and its creation time (reproducible builds).
    #[arg(long, env = "SOURCE_DATE_EPOCH", default_value_t = 0)]
    source_date_epoch: u64,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(workspace_root())
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn build_dist() -> Result<PathBuf> {
    let root = workspace_root();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("building: cargo build --locked --profile dist -p vcsync");
    let status = Command::new(cargo)
        .args(["build", "--locked", "--profile", "dist", "-p", "vcsync"])
        .current_dir(&root)
        .status()
        .context("running cargo")?;
    ensure!(status.success(), "cargo build --profile dist failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    Ok(target.join("dist").join("vcsync"))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let out = match (&args.out, &args.layout, &args.rootfs) {
        (None, None, None) => Some(workspace_root().join("target/vcsync-image.oci.tar")),
        (out, _, _) => out.clone(),
    };
    let binary = match &args.binary {
        Some(b) => b.clone(),
        None => build_dist()?,
    };
    let started = Instant::now();
    let data = std::fs::read(&binary).with_context(|| binary.display().to_string())?;
    let elf = vcsync_image::Elf::parse(&data).context("the binary")?;
    let (arch, _) = elf.arch()?;
    let tmp = tempfile::tempdir()?;
    let debs_dir = args.debs.clone().unwrap_or_else(|| tmp.path().join("debs"));
    eprintln!(
        "base: {} ({arch}) in {}",
        DEBIAN_PACKAGES.join(" "),
        debs_dir.display()
    );
    let debs = vcsync_image::fetch_debs(&debs_dir, arch)?;
    let options = Options {
        tag: args.tag.clone(),
        source_date_epoch: args.source_date_epoch,
        source: args
            .source
            .clone()
            .or_else(|| git(&["remote", "get-url", "origin"])),
        revision: args
            .revision
            .clone()
            .or_else(|| git(&["rev-parse", "HEAD"])),
        ..Options::default()
    };
    let image = Image::build(&data, &debs, &options)?;
    if let Some(dir) = &args.rootfs {
        image.rootfs.write_to(dir)?;
        println!("rootfs: {}", dir.display());
    }
    if let Some(dir) = &args.layout {
        image.write_layout(dir)?;
        println!("layout: {}", dir.display());
    }
    if let Some(out) = &out {
        let size = image.write_archive(out, args.source_date_epoch)?;
        println!(
            "archive: {} ({:.1} MiB)",
            out.display(),
            size as f64 / 1048576.0
        );
    }
    let layers: u64 = image
        .layer_digests
        .iter()
        .map(|d| image.blobs[d].len() as u64)
        .sum();
    println!("image: {}", image.tag);
    println!(
        "layers: {} ({:.1} MiB compressed)",
        image.layer_digests.len(),
        layers as f64 / 1048576.0
    );
    println!("config: {}", image.config_digest);
    println!("digest: {}", image.manifest_digest);
    eprintln!("built in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
