//! vcsync's container image, built without a container daemon.
//!
//! The image is the `vcsync` binary on a minimal base taken from Debian
//! packages: the dynamic loader and the libraries the binary links (found by
//! reading its ELF headers, not by a fixed list), the CA certificates,
//! `/etc/passwd` and `/etc/group` naming the user the manifests run as, and
//! the packages' copyright files. No shell, no package manager, nothing else.
//!
//! [`Image::build`] writes two reproducible layers (sorted entries, every
//! mtime `SOURCE_DATE_EPOCH`, owner 0:0) and the OCI config, manifest and
//! index; [`Image::write_archive`] writes them as an OCI image layout in one
//! tar (with Docker's `manifest.json` too, so `docker load` reads it).
//! `image/Containerfile` builds the same files with a container builder: its
//! build stage runs this crate's `build-image --rootfs`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail, ensure};
use oci_spec::image::{
    Arch, ConfigBuilder, DescriptorBuilder, HistoryBuilder, ImageConfiguration,
    ImageConfigurationBuilder, ImageIndexBuilder, ImageManifest, ImageManifestBuilder, MediaType,
    Os, RootFsBuilder, Sha256Digest,
};
use sha2::{Digest as _, Sha256};

/// The image's repository name; [`default_tag`] adds the version.
pub const NAME: &str = "vcsync";
/// vcsync's version, the image's tag.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Where the binary is, and what the image runs.
pub const ENTRYPOINT: &str = "/usr/local/bin/vcsync";
/// The default arguments: `vcsync run`, as the StatefulSet runs it.
pub const CMD: &[&str] = &["run"];
/// The user and group the image (and the manifests) run as.
pub const UID: u32 = 10001;
pub const GID: u32 = 10001;
pub const USER_NAME: &str = "vcsync";
/// `PATH` in the image: the StatefulSet's `command: ["vcsync", ...]` and
/// `kubectl exec ... -- vcsync kubeconfig` find the binary through it.
pub const PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// The CA bundle, where Debian (and rustls-native-certs) put it.
pub const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// The Debian packages the base comes from: glibc (loader, libc, libm),
/// libgcc_s, the CA certificates, and `gcc-12-base`, which holds libgcc-s1's
/// copyright file. Debian 12 (bookworm): the binary must be built against a
/// glibc no newer than this one (a bookworm host or `rust:*-bookworm`).
pub const DEBIAN_PACKAGES: &[&str] = &["libc6", "libgcc-s1", "gcc-12-base", "ca-certificates"];
/// The OCI label naming the Debian packages (and versions) of the base.
pub const LABEL_DEBIAN_PACKAGES: &str = "io.vcsync.image.debian-packages";

const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// `vcsync:<version>`.
pub fn default_tag() -> String {
    format!("{NAME}:{VERSION}")
}

/// The files of one layer, by path (relative, without a leading `/`).
/// A `BTreeMap` sorts parents before their children.
#[derive(Clone, Debug, Default)]
pub struct Tree {
    entries: BTreeMap<String, Entry>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Dir { mode: u32 },
    File { mode: u32, data: Vec<u8> },
    Symlink { target: String },
}

fn relative(path: &str) -> String {
    path.trim_start_matches('/')
        .trim_end_matches('/')
        .to_owned()
}

impl Tree {
    pub fn entries(&self) -> &BTreeMap<String, Entry> {
        &self.entries
    }

    fn parents(&mut self, path: &str) {
        let mut at = String::new();
        for part in path.split('/').collect::<Vec<_>>().split_last().unwrap().1 {
            if !at.is_empty() {
                at.push('/');
            }
            at.push_str(part);
            self.entries
                .entry(at.clone())
                .or_insert(Entry::Dir { mode: 0o755 });
        }
    }

    pub fn dir(&mut self, path: &str, mode: u32) {
        let path = relative(path);
        self.parents(&path);
        self.entries.insert(path, Entry::Dir { mode });
    }

    pub fn file(&mut self, path: &str, mode: u32, data: Vec<u8>) {
        let path = relative(path);
        self.parents(&path);
        self.entries.insert(path, Entry::File { mode, data });
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        let path = relative(path);
        self.parents(&path);
        self.entries.insert(
            path,
            Entry::Symlink {
                target: target.to_owned(),
            },
        );
    }

    /// The entry at `path` after following symlinks (in the tree) on every
    /// component, as the kernel and the dynamic loader would.
    pub fn resolve(&self, path: &str) -> Option<(String, &Entry)> {
        let mut parts: Vec<String> = Vec::new();
        let mut todo: Vec<String> = relative(path).split('/').rev().map(str::to_owned).collect();
        let mut hops = 0;
        while let Some(part) = todo.pop() {
            match part.as_str() {
                "" | "." => continue,
                ".." => {
                    parts.pop();
                    continue;
                }
                _ => parts.push(part),
            }
            let at = parts.join("/");
            match self.entries.get(&at)? {
                Entry::Symlink { target } => {
                    hops += 1;
                    if hops > 40 {
                        return None;
                    }
                    parts.pop();
                    if target.starts_with('/') {
                        parts.clear();
                    }
                    todo.extend(target.split('/').rev().map(str::to_owned));
                }
                Entry::File { .. } if !todo.is_empty() => return None,
                _ => {}
            }
        }
        let at = parts.join("/");
        let entry = self.entries.get(&at)?;
        Some((at, entry))
    }

    /// Adds `other`'s entries (a later layer wins, as in an image).
    pub fn merge(&mut self, other: &Tree) {
        for (k, v) in &other.entries {
            self.entries.insert(k.clone(), v.clone());
        }
    }

    /// The layer as an uncompressed tar: entries in path order, owner 0:0,
    /// no user or group names, every mtime `mtime`.
    pub fn tar(&self, mtime: u64) -> Result<Vec<u8>> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, entry) in &self.entries {
            let mut header = tar::Header::new_gnu();
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(mtime);
            match entry {
                Entry::Dir { mode } => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(*mode);
                    header.set_size(0);
                    builder.append_data(&mut header, format!("{path}/"), std::io::empty())?;
                }
                Entry::File { mode, data } => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_size(data.len() as u64);
                    builder.append_data(&mut header, path, data.as_slice())?;
                }
                Entry::Symlink { target } => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    builder.append_link(&mut header, path, target)?;
                }
            }
        }
        Ok(builder.into_inner()?)
    }

    /// Writes the tree under `dir` (for `image/Containerfile`'s `COPY`).
    pub fn write_to(&self, dir: &Path) -> Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::create_dir_all(dir)?;
        for (path, entry) in &self.entries {
            let at = dir.join(path);
            match entry {
                Entry::Dir { .. } => std::fs::create_dir_all(&at)?,
                Entry::File { data, .. } => std::fs::write(&at, data)?,
                Entry::Symlink { target } => std::os::unix::fs::symlink(target, &at)?,
            }
        }
        // Modes last: a read-only directory would refuse its children.
        for (path, entry) in self.entries.iter().rev() {
            if let Entry::Dir { mode } | Entry::File { mode, .. } = entry {
                std::fs::set_permissions(dir.join(path), std::fs::Permissions::from_mode(*mode))
                    .with_context(|| format!("chmod {path}"))?;
            }
        }
        Ok(())
    }
}

/// What the dynamic loader needs to know about an ELF file.
#[derive(Debug)]
pub struct Elf {
    pub machine: u16,
    /// `PT_INTERP`: the dynamic loader's path (executables only).
    pub interpreter: Option<String>,
    /// `DT_NEEDED`: the libraries it links, by soname.
    pub needed: Vec<String>,
}

impl Elf {
    pub fn parse(data: &[u8]) -> Result<Elf> {
        use object::read::elf::{ElfFile64, FileHeader as _, ProgramHeader as _};
        let file = ElfFile64::<object::Endianness>::parse(data).context("not a 64-bit ELF file")?;
        let endian = file.endian();
        let machine = file.elf_header().e_machine(endian);
        let mut interpreter = None;
        for ph in file.elf_program_headers() {
            if let Some(interp) = ph.interpreter(endian, data)? {
                interpreter = Some(String::from_utf8(interp.to_vec())?);
            }
        }
        let table = file.elf_section_table().dynamic_table(endian, data)?;
        let mut needed = Vec::new();
        for d in &table {
            if d.tag == object::elf::DT_NEEDED {
                needed.push(String::from_utf8(table.string(d)?.to_vec())?);
            }
        }
        Ok(Elf {
            machine,
            interpreter,
            needed,
        })
    }

    /// The Debian architecture and the OCI one.
    pub fn arch(&self) -> Result<(&'static str, Arch)> {
        Ok(match self.machine {
            object::elf::EM_X86_64 => ("amd64", Arch::Amd64),
            object::elf::EM_AARCH64 => ("arm64", Arch::ARM64),
            other => bail!("ELF machine {other}: no Debian architecture known for it"),
        })
    }
}

/// Directories the loader searches for a soname, in a root: the multiarch
/// ones (`lib/x86_64-linux-gnu`, also under `usr/`) and the plain ones.
fn library_dirs(tree: &Tree) -> Vec<String> {
    let mut dirs: Vec<String> = tree
        .entries
        .iter()
        .filter(|(p, e)| {
            matches!(e, Entry::Dir { .. } | Entry::Symlink { .. })
                && (p.starts_with("lib/") || p.starts_with("usr/lib/"))
                && p.matches('/').count() == p.starts_with("usr/") as usize + 1
                && p.ends_with("-linux-gnu")
        })
        .map(|(p, _)| p.clone())
        .collect();
    dirs.extend(["lib64", "lib", "usr/lib64", "usr/lib"].map(str::to_owned));
    dirs
}

/// The files unpacked from the Debian packages, loaded as a tree (every
/// file, to pick from).
fn load_root(root: &Path) -> Result<Tree> {
    use std::os::unix::fs::PermissionsExt as _;
    fn walk(root: &Path, dir: &Path, tree: &mut Tree) -> Result<()> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let rel = path
                .strip_prefix(root)?
                .to_str()
                .context("path not UTF-8")?;
            let meta = std::fs::symlink_metadata(&path)?;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path)?;
                tree.symlink(rel, target.to_str().context("link not UTF-8")?);
            } else if meta.is_dir() {
                tree.dir(rel, meta.permissions().mode() & 0o7777);
                walk(root, &path, tree)?;
            } else if meta.is_file() {
                tree.file(
                    rel,
                    meta.permissions().mode() & 0o7777,
                    std::fs::read(&path)?,
                );
            }
        }
        Ok(())
    }
    let mut tree = Tree::default();
    walk(root, root, &mut tree)?;
    Ok(tree)
}

/// Copies `path` from `from` into `into`: every symlink on the way (as a
/// symlink) and the file it ends at. Returns the file's resolved path.
fn copy_resolved(from: &Tree, into: &mut Tree, path: &str) -> Result<String> {
    let mut parts: Vec<String> = Vec::new();
    let mut todo: Vec<String> = relative(path).split('/').rev().map(str::to_owned).collect();
    while let Some(part) = todo.pop() {
        match part.as_str() {
            "" | "." => continue,
            ".." => {
                parts.pop();
                continue;
            }
            _ => parts.push(part),
        }
        let at = parts.join("/");
        match from.entries.get(&at) {
            Some(Entry::Symlink { target }) => {
                into.symlink(&at, target);
                parts.pop();
                if target.starts_with('/') {
                    parts.clear();
                }
                todo.extend(target.split('/').rev().map(str::to_owned));
            }
            Some(Entry::Dir { mode }) => {
                if !into.entries.contains_key(&at) {
                    into.dir(&at, *mode);
                }
            }
            Some(file @ Entry::File { .. }) => {
                ensure!(todo.is_empty(), "{path}: {at} is not a directory");
                into.entries.insert(at.clone(), file.clone());
                return Ok(at);
            }
            None => bail!("{path}: {at} is in none of the packages"),
        }
    }
    bail!("{path} is a directory")
}

/// Debian packages as files: `--debs DIR` (a cache: what is missing is
/// downloaded into it) or a temporary directory.
pub fn fetch_debs(dir: &Path, arch: &str) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let find = |pkg: &str| -> Result<Option<PathBuf>> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    n.starts_with(&format!("{pkg}_"))
                        && (n.ends_with(&format!("_{arch}.deb")) || n.ends_with("_all.deb"))
                })
            })
            .collect();
        found.sort();
        Ok(found.pop())
    };
    let missing: Vec<String> = DEBIAN_PACKAGES
        .iter()
        .filter(|p| find(p).ok().flatten().is_none())
        .map(|p| format!("{p}:{arch}"))
        .collect();
    if !missing.is_empty() {
        // apt's download user must be able to write here.
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).ok();
        let out = Command::new("apt-get")
            .arg("download")
            .args(&missing)
            .current_dir(dir)
            .output()
            .context("running apt-get (a Debian host is needed to fetch the base)")?;
        ensure!(
            out.status.success(),
            "apt-get download {} failed (run `apt-get update` first?):\n{}",
            missing.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    DEBIAN_PACKAGES
        .iter()
        .map(|p| find(p)?.with_context(|| format!("no {p} package in {}", dir.display())))
        .collect()
}

/// A Debian package's name and version, from its control file.
fn deb_identity(deb: &Path) -> Result<(String, String, String)> {
    let out = Command::new("dpkg-deb")
        .args([
            "--show",
            "--showformat=${Package} ${Version} ${Architecture}",
        ])
        .arg(deb)
        .output()
        .context("running dpkg-deb")?;
    ensure!(out.status.success(), "dpkg-deb --show {}", deb.display());
    let text = String::from_utf8(out.stdout)?;
    let mut it = text.split_whitespace().map(str::to_owned);
    match (it.next(), it.next(), it.next()) {
        (Some(p), Some(v), Some(a)) => Ok((p, v, a)),
        _ => bail!("{}: unreadable control file", deb.display()),
    }
}

/// The base layer: what `binary` needs to run, from the Debian packages
/// `debs`. Also returns `package=version` for each package.
pub fn base_layer(binary: &[u8], debs: &[PathBuf]) -> Result<(Tree, Vec<String>)> {
    let elf = Elf::parse(binary).context("the vcsync binary")?;
    let (arch, _) = elf.arch()?;
    let unpacked = tempfile::tempdir()?;
    let mut packages = Vec::new();
    for deb in debs {
        let (name, version, deb_arch) = deb_identity(deb)?;
        ensure!(
            deb_arch == arch || deb_arch == "all",
            "{}: architecture {deb_arch}, the binary is {arch}",
            deb.display()
        );
        let status = Command::new("dpkg-deb")
            .arg("--extract")
            .arg(deb)
            .arg(unpacked.path())
            .status()
            .context("running dpkg-deb")?;
        ensure!(status.success(), "dpkg-deb --extract {}", deb.display());
        packages.push((name, version));
    }
    packages.sort();
    let from = load_root(unpacked.path())?;
    let mut base = Tree::default();

    // The loader, then every library linked, transitively.
    let interpreter = elf
        .interpreter
        .as_deref()
        .context("the binary has no ELF interpreter: is it static?")?;
    let mut queue: Vec<String> = vec![copy_resolved(&from, &mut base, interpreter)?];
    let mut seen_names: BTreeSet<String> = BTreeSet::new();
    let dirs = library_dirs(&from);
    let mut pending: Vec<(String, String)> = elf
        .needed
        .iter()
        .map(|n| ("the binary".to_owned(), n.clone()))
        .collect();
    loop {
        for file in queue.drain(..) {
            let Some(Entry::File { data, .. }) = base.entries.get(&file) else {
                unreachable!()
            };
            let lib = Elf::parse(data).with_context(|| file.clone())?;
            pending.extend(lib.needed.into_iter().map(|n| (file.clone(), n)));
        }
        let Some((by, name)) = pending.pop() else {
            break;
        };
        if !seen_names.insert(name.clone()) {
            continue;
        }
        let dir = dirs
            .iter()
            .find(|d| from.resolve(&format!("{d}/{name}")).is_some())
            .with_context(|| format!("{name} (needed by {by}) is in none of {debs:?}"))?;
        queue.push(copy_resolved(&from, &mut base, &format!("{dir}/{name}"))?);
    }

    // The CA bundle, as update-ca-certificates would write it.
    let mut certs: Vec<(&String, &Vec<u8>)> = from
        .entries
        .iter()
        .filter_map(|(p, e)| match e {
            Entry::File { data, .. }
                if p.starts_with("usr/share/ca-certificates/") && p.ends_with(".crt") =>
            {
                Some((p, data))
            }
            _ => None,
        })
        .collect();
    certs.sort();
    ensure!(
        !certs.is_empty(),
        "no certificates in the ca-certificates package"
    );
    let mut bundle = Vec::new();
    for (_, pem) in certs {
        bundle.extend_from_slice(pem);
        if !bundle.ends_with(b"\n") {
            bundle.push(b'\n');
        }
    }
    base.file(CA_BUNDLE, 0o644, bundle);

    // The packages' licences.
    for (name, _) in &packages {
        let doc = format!("usr/share/doc/{name}");
        match from.entries.get(&doc) {
            Some(Entry::Symlink { target }) => base.symlink(&doc, target),
            _ => {
                let file = format!("{doc}/copyright");
                copy_resolved(&from, &mut base, &file)?;
            }
        }
    }
    for (name, _) in &packages {
        let file = format!("usr/share/doc/{name}/copyright");
        ensure!(
            matches!(base.resolve(&file), Some((_, Entry::File { .. }))),
            "{file} missing (its package is not in DEBIAN_PACKAGES?)"
        );
    }

    // Users, name service, a writable-if-mounted /tmp.
    base.file(
        "etc/passwd",
        0o644,
        format!(
            "root:x:0:0:root:/root:/sbin/nologin\n\
             nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n\
             {USER_NAME}:x:{UID}:{GID}:{USER_NAME}:/nonexistent:/sbin/nologin\n"
        )
        .into_bytes(),
    );
    base.file(
        "etc/group",
        0o644,
        format!("root:x:0:\nnogroup:x:65534:\n{USER_NAME}:x:{GID}:\n").into_bytes(),
    );
    base.file(
        "etc/nsswitch.conf",
        0o644,
        b"passwd: files\ngroup: files\nhosts: files dns\n".to_vec(),
    );
    base.dir("tmp", 0o1777);

    let packages = packages
        .into_iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect();
    Ok((base, packages))
}

/// The layer holding the binary.
pub fn binary_layer(binary: &[u8]) -> Tree {
    let mut tree = Tree::default();
    tree.file(ENTRYPOINT, 0o755, binary.to_vec());
    tree
}

/// What goes into the image besides the files.
#[derive(Clone, Debug)]
pub struct Options {
    /// `NAME:TAG` in the index (`org.opencontainers.image.ref.name`) and
    /// in Docker's `manifest.json`.
    pub tag: String,
    /// Every mtime and the config's `created` (seconds since 1970).
    pub source_date_epoch: u64,
    /// `org.opencontainers.image.source`, if known.
    pub source: Option<String>,
    /// `org.opencontainers.image.revision`, if known.
    pub revision: Option<String>,
    /// gzip level of the layers (6 is the default).
    pub compression: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tag: default_tag(),
            source_date_epoch: 0,
            source: None,
            revision: None,
            compression: 6,
        }
    }
}

/// One built image: its blobs and the documents naming them.
pub struct Image {
    /// Every blob by its `sha256:…` digest.
    pub blobs: BTreeMap<String, Vec<u8>>,
    pub index: Vec<u8>,
    pub manifest_digest: String,
    pub config_digest: String,
    /// The layers' digests (compressed), bottom first.
    pub layer_digests: Vec<String>,
    /// The files of all layers, merged.
    pub rootfs: Tree,
    pub tag: String,
}

fn sha256(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

fn digest(data: &[u8]) -> Result<Sha256Digest> {
    Ok(format!("{:x}", Sha256::digest(data)).parse()?)
}

/// JSON with every object's keys sorted: oci-spec keeps labels and
/// annotations in `HashMap`s, whose order changes from run to run.
fn canonical_json(value: &impl serde::Serialize) -> Result<Vec<u8>> {
    fn sort(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => {
                let sorted: BTreeMap<String, serde_json::Value> =
                    m.into_iter().map(|(k, v)| (k, sort(v))).collect();
                serde_json::Value::Object(sorted.into_iter().collect())
            }
            serde_json::Value::Array(a) => {
                serde_json::Value::Array(a.into_iter().map(sort).collect())
            }
            other => other,
        }
    }
    Ok(serde_json::to_vec(&sort(serde_json::to_value(value)?))?)
}

/// The labels every build sets (the Containerfile sets the same).
pub fn static_labels() -> BTreeMap<String, String> {
    BTreeMap::from(
        [
            ("org.opencontainers.image.title", NAME),
            (
                "org.opencontainers.image.description",
                "Virtual-cluster syncer: mirrors a tenant's virtual Kubernetes API into one host namespace",
            ),
            ("org.opencontainers.image.version", VERSION),
            ("org.opencontainers.image.licenses", env!("CARGO_PKG_LICENSE")),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    )
}

impl Image {
    /// The image of `binary` on a base from the Debian packages `debs`.
    pub fn build(binary: &[u8], debs: &[PathBuf], options: &Options) -> Result<Image> {
        let (base, packages) = base_layer(binary, debs)?;
        let (_, arch) = Elf::parse(binary)?.arch()?;
        let app = binary_layer(binary);
        let created =
            jiff::Timestamp::from_second(options.source_date_epoch.try_into()?)?.to_string();

        let mut blobs = BTreeMap::new();
        let mut diff_ids = Vec::new();
        let mut layers = Vec::new();
        let mut history = Vec::new();
        for (tree, created_by) in [
            (&base, format!("base: {}", packages.join(" "))),
            (&app, format!("vcsync {VERSION} at {ENTRYPOINT}")),
        ] {
            let tar = tree.tar(options.source_date_epoch)?;
            diff_ids.push(sha256(&tar));
            let mut gz = flate2::GzBuilder::new()
                .mtime(0)
                .write(Vec::new(), flate2::Compression::new(options.compression));
            gz.write_all(&tar)?;
            let gz = gz.finish()?;
            layers.push(
                DescriptorBuilder::default()
                    .media_type(MediaType::from(LAYER_MEDIA_TYPE))
                    .size(gz.len() as u64)
                    .digest(digest(&gz)?)
                    .build()?,
            );
            history.push(
                HistoryBuilder::default()
                    .created(created.clone())
                    .created_by(created_by)
                    .build()?,
            );
            blobs.insert(sha256(&gz), gz);
        }

        let mut labels = static_labels();
        labels.insert(LABEL_DEBIAN_PACKAGES.to_owned(), packages.join(" "));
        if let Some(source) = &options.source {
            labels.insert("org.opencontainers.image.source".to_owned(), source.clone());
        }
        if let Some(revision) = &options.revision {
            labels.insert(
                "org.opencontainers.image.revision".to_owned(),
                revision.clone(),
            );
        }
        let config: ImageConfiguration = ImageConfigurationBuilder::default()
            .created(created)
            .architecture(arch.clone())
            .os(Os::Linux)
            .config(
                ConfigBuilder::default()
                    .user(format!("{UID}:{GID}"))
                    .env(vec![format!("PATH={PATH}")])
                    .entrypoint(vec![ENTRYPOINT.to_owned()])
                    .cmd(CMD.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                    .working_dir("/")
                    .labels(
                        labels
                            .clone()
                            .into_iter()
                            .collect::<std::collections::HashMap<_, _>>(),
                    )
                    .build()?,
            )
            .rootfs(
                RootFsBuilder::default()
                    .typ("layers")
                    .diff_ids(diff_ids)
                    .build()?,
            )
            .history(history)
            .build()?;
        let config = canonical_json(&config)?;
        let config_digest = sha256(&config);
        let layer_digests: Vec<String> = layers.iter().map(|l| l.digest().to_string()).collect();
        let manifest: ImageManifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(
                DescriptorBuilder::default()
                    .media_type(MediaType::ImageConfig)
                    .size(config.len() as u64)
                    .digest(digest(&config)?)
                    .build()?,
            )
            .layers(layers)
            .build()?;
        blobs.insert(config_digest.clone(), config);
        let manifest = canonical_json(&manifest)?;
        let manifest_digest = sha256(&manifest);
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(vec![
                DescriptorBuilder::default()
                    .media_type(MediaType::ImageManifest)
                    .size(manifest.len() as u64)
                    .digest(digest(&manifest)?)
                    .platform(
                        oci_spec::image::PlatformBuilder::default()
                            .architecture(arch)
                            .os(Os::Linux)
                            .build()?,
                    )
                    .annotations(std::collections::HashMap::from([(
                        "org.opencontainers.image.ref.name".to_owned(),
                        options.tag.clone(),
                    )]))
                    .build()?,
            ])
            .build()?;
        blobs.insert(manifest_digest.clone(), manifest);
        let index = canonical_json(&index)?;

        let mut rootfs = base;
        rootfs.merge(&app);
        Ok(Image {
            blobs,
            index,
            manifest_digest,
            config_digest,
            layer_digests,
            rootfs,
            tag: options.tag.clone(),
        })
    }

    /// The OCI image layout's files: `oci-layout`, `index.json`, the blobs,
    /// and Docker's `manifest.json`.
    pub fn layout(&self) -> Result<Tree> {
        let mut tree = Tree::default();
        tree.file(
            "oci-layout",
            0o644,
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        );
        tree.file("index.json", 0o644, self.index.clone());
        let blob = |d: &str| format!("blobs/sha256/{}", d.trim_start_matches("sha256:"));
        let docker = serde_json::json!([{
            "Config": blob(&self.config_digest),
            "RepoTags": [self.tag],
            "Layers": self.layer_digests.iter().map(|d| blob(d)).collect::<Vec<_>>(),
        }]);
        tree.file("manifest.json", 0o644, serde_json::to_vec(&docker)?);
        for (d, data) in &self.blobs {
            tree.file(&blob(d), 0o644, data.clone());
        }
        Ok(tree)
    }

    /// The layout as one tar: `podman load`, `docker load`,
    /// `skopeo copy oci-archive:…` read it.
    pub fn write_archive(&self, path: &Path, mtime: u64) -> Result<u64> {
        let tar = self.layout()?.tar(mtime)?;
        if let Some(dir) = path.parent().filter(|d| d.components().next().is_some()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, &tar).with_context(|| path.display().to_string())?;
        Ok(tar.len() as u64)
    }

    /// The layout unpacked under `dir`.
    pub fn write_layout(&self, dir: &Path) -> Result<()> {
        self.layout()?.write_to(dir)
    }
}
