//! The container image: `image/Containerfile`, the daemonless builder
//! (`vcsync-image`, `build-image`) and the StatefulSet's vcsync container
//! must agree on what runs, as whom and from where; and an image built by
//! the builder from the test binary must hold what that binary needs to run
//! (its ELF interpreter and every library it links, transitively), the CA
//! bundle and the user, and nothing else: no shell, no package manager.
//!
//! The image test downloads the Debian packages of the base with
//! `apt-get download` once into `target/tmp/image-debs` (a Debian host with
//! its package lists is needed; `.ci/run` makes sure of both). It fails when
//! it cannot: a skipped check would look like a passed one.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Container;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use vcsync_image::{
    CA_BUNDLE, CMD, DEBIAN_PACKAGES, ENTRYPOINT, Elf, Entry, GID, Image, Options, PATH, Tree, UID,
    USER_NAME, VERSION,
};

/// The k3s the manifests run: the same Kubernetes minor (and patch) as the
/// API the test servers emulate (kube-apiserver v1.32.3).
const K3S_IMAGE: &str = "rancher/k3s:v1.32.3-k3s1";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

// --- the Containerfile ---------------------------------------------------------

/// One instruction of a Containerfile: the keyword and the rest of the line,
/// continuation lines joined.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if current.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(line);
        let (keyword, rest) = current.split_once(char::is_whitespace).unwrap();
        out.push((keyword.to_uppercase(), rest.trim().to_owned()));
        current.clear();
    }
    out
}

/// `KEY="value" KEY2=value` as a map (the LABEL and ENV forms used here).
fn key_values(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=').expect("KEY=VALUE");
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"').expect("closing quote");
            (quoted[..end].to_owned(), &quoted[end + 1..])
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (after[..end].to_owned(), &after[end..])
        };
        out.insert(key.trim().to_owned(), value);
        rest = after.trim_start();
    }
    out
}

#[test]
fn the_containerfile_runs_what_the_builder_writes() {
    let text = std::fs::read_to_string(root().join("image/Containerfile")).unwrap();
    let all = instructions(&text);
    let last_from = all.iter().rposition(|(k, _)| k == "FROM").unwrap();
    let (build, last) = all.split_at(last_from);
    assert_eq!(last[0].1, "scratch", "the final stage starts empty");

    // The build stage makes the files with the builder, on bookworm (the
    // Debian release of DEBIAN_PACKAGES, whose glibc the binary links).
    let rust_version = std::fs::read_to_string(root().join("Cargo.toml"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .unwrap()
        .trim_matches('"')
        .to_owned();
    let from = &build.iter().find(|(k, _)| k == "FROM").unwrap().1;
    assert!(
        from.starts_with(&format!("docker.io/library/rust:{rust_version}-bookworm ")),
        "build stage: {from} (rust-version is {rust_version})"
    );
    assert!(
        DEBIAN_PACKAGES.contains(&"gcc-12-base"),
        "bookworm's libgcc"
    );
    let runs: Vec<&String> = build
        .iter()
        .filter(|(k, _)| k == "RUN")
        .map(|(_, v)| v)
        .collect();
    assert!(
        runs.iter()
            .any(|r| r.contains("--bin build-image") && r.contains("--rootfs /rootfs")),
        "the build stage runs build-image --rootfs /rootfs: {runs:?}"
    );

    // The final stage: only those files, and the builder's config.
    let get = |key: &str| -> Vec<&String> {
        last.iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v)
            .collect()
    };
    assert_eq!(get("COPY"), ["--from=build /rootfs/ /"]);
    assert!(get("RUN").is_empty(), "no RUN: there is no shell");
    assert_eq!(get("USER"), [&format!("{UID}:{GID}")]);
    let json = |key: &str| -> Vec<String> {
        let v = get(key);
        assert_eq!(v.len(), 1, "one {key}");
        serde_json::from_str(v[0]).unwrap_or_else(|e| panic!("{key} in exec form: {e}"))
    };
    assert_eq!(json("ENTRYPOINT"), [ENTRYPOINT]);
    assert_eq!(json("CMD"), CMD);
    let env: BTreeMap<String, String> = get("ENV").iter().flat_map(|e| key_values(e)).collect();
    assert_eq!(env, BTreeMap::from([("PATH".to_owned(), PATH.to_owned())]));
    assert_eq!(get("WORKDIR"), ["/"]);
    let labels: BTreeMap<String, String> =
        get("LABEL").iter().flat_map(|l| key_values(l)).collect();
    for (key, value) in vcsync_image::static_labels() {
        assert_eq!(labels.get(&key), Some(&value), "LABEL {key}");
    }
    assert_eq!(labels["org.opencontainers.image.version"], VERSION);
    assert_eq!(labels["org.opencontainers.image.licenses"], "Apache-2.0");
    for from_arg in [
        "org.opencontainers.image.source",
        "org.opencontainers.image.revision",
    ] {
        assert!(labels.contains_key(from_arg), "LABEL {from_arg}");
    }
}

// --- the manifests ---------------------------------------------------------------

fn kustomizations() -> Vec<PathBuf> {
    let mut out = vec![root().join("manifests/base")];
    let overlays = root().join("manifests/overlays");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(overlays)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    out.extend(dirs);
    out
}

fn stateful_set(dir: &Path) -> StatefulSet {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("running kubectl (needed by this test): {e}"));
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<Value> = serde_saphyr::from_multiple(std::str::from_utf8(&out.stdout).unwrap())
        .expect("rendered YAML");
    let sts: Vec<StatefulSet> = docs
        .into_iter()
        .filter(|d| d["kind"] == "StatefulSet")
        .map(|d| serde_json::from_value(d).unwrap())
        .collect();
    assert_eq!(sts.len(), 1, "{}: one StatefulSet", dir.display());
    sts.into_iter().next().unwrap()
}

fn container<'a>(containers: &'a [Container], name: &str) -> &'a Container {
    containers
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

/// What a runtime runs for `command`: a bare name is looked up on the
/// image's PATH, where only ENTRYPOINT has it.
fn resolve_command(command: &str) -> Option<String> {
    if command.starts_with('/') {
        return Some(command.to_owned());
    }
    PATH.split(':')
        .map(|dir| format!("{dir}/{command}"))
        .find(|p| p == ENTRYPOINT)
}

#[test]
fn the_statefulset_runs_the_image_as_it_is_built() {
    for dir in kustomizations() {
        let what = dir.strip_prefix(root()).unwrap().display().to_string();
        let sts = stateful_set(&dir);
        let pod = sts.spec.template.spec.unwrap();
        let vcsync = container(&pod.containers, "vcsync");

        // The image the builder tags (vcsync:VERSION), under some registry.
        let image = vcsync.image.as_deref().unwrap();
        let (name, tag) = image.rsplit_once(':').unwrap();
        assert!(
            name == vcsync_image::NAME || name.ends_with(&format!("/{}", vcsync_image::NAME)),
            "{what}: image {image}"
        );
        assert_eq!(tag, VERSION, "{what}: image {image}");

        // The program: the image's entrypoint with the image's default arguments.
        let mut argv: Vec<String> = vcsync.command.clone().unwrap_or_default();
        argv.extend(vcsync.args.clone().unwrap_or_default());
        assert!(!argv.is_empty(), "{what}: vcsync sets its command");
        assert_eq!(
            resolve_command(&argv[0]).as_deref(),
            Some(ENTRYPOINT),
            "{what}: {} is not on the image's PATH {PATH}",
            argv[0]
        );
        assert_eq!(argv[1..], *CMD, "{what}: arguments");

        // As the image's user, on its read-only files.
        let pod_sc = pod.security_context.clone().unwrap_or_default();
        let sc = vcsync.security_context.clone().unwrap_or_default();
        let run_as_user = sc.run_as_user.or(pod_sc.run_as_user);
        let run_as_group = sc.run_as_group.or(pod_sc.run_as_group);
        assert_eq!(run_as_user, Some(i64::from(UID)), "{what}: runAsUser");
        assert_eq!(run_as_group, Some(i64::from(GID)), "{what}: runAsGroup");
        assert_eq!(pod_sc.fs_group, Some(i64::from(GID)), "{what}: fsGroup");
        assert_eq!(
            sc.run_as_non_root.or(pod_sc.run_as_non_root),
            Some(true),
            "{what}"
        );
        assert_eq!(sc.read_only_root_filesystem, Some(true), "{what}");

        // Nothing mounted over what the image holds: the binary, the
        // loader and libraries, the CA bundle and /etc/passwd.
        let image_paths = [
            ENTRYPOINT,
            CA_BUNDLE,
            "/etc/passwd",
            "/lib",
            "/lib64",
            "/usr/lib",
        ];
        for m in vcsync.volume_mounts.iter().flatten() {
            let at = m.mount_path.trim_end_matches('/');
            assert!(at.starts_with('/') && !at.is_empty(), "{what}: {at}");
            for p in image_paths {
                assert!(
                    !(p == at || p.starts_with(&format!("{at}/"))),
                    "{what}: the mount at {} hides the image's {p}",
                    m.mount_path
                );
            }
        }

        // k3s pinned, to the version README names.
        let init = pod.init_containers.clone().unwrap_or_default();
        let k3s = container(&init, "k3s");
        assert_eq!(k3s.image.as_deref(), Some(K3S_IMAGE), "{what}: k3s image");
    }
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        readme.contains(K3S_IMAGE),
        "README names the k3s image {K3S_IMAGE}"
    );
}

// --- an image of the test binary ---------------------------------------------------

fn sha256(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// A layer's entries, checked for reproducibility on the way: path order,
/// owner 0:0 without names, mtime `epoch`, no set-id bits.
fn read_layer(tar_bytes: &[u8], epoch: u64, into: &mut Tree) -> Vec<String> {
    let mut archive = tar::Archive::new(tar_bytes);
    let mut paths = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let header = entry.header().clone();
        let path = entry.path().unwrap().to_str().unwrap().to_owned();
        let what = format!("layer entry {path}");
        assert_eq!(header.uid().unwrap(), 0, "{what}");
        assert_eq!(header.gid().unwrap(), 0, "{what}");
        assert!(
            header.username().unwrap().unwrap_or("").is_empty(),
            "{what}"
        );
        assert!(
            header.groupname().unwrap().unwrap_or("").is_empty(),
            "{what}"
        );
        assert_eq!(header.mtime().unwrap(), epoch, "{what}");
        let mode = header.mode().unwrap();
        assert_eq!(mode & 0o6000, 0, "{what}: setuid/setgid");
        assert!(!path.starts_with('/') && !path.contains(".."), "{what}");
        match header.entry_type() {
            tar::EntryType::Directory => into.dir(&path, mode),
            tar::EntryType::Regular => {
                let mut data = Vec::new();
                entry.read_to_end(&mut data).unwrap();
                into.file(&path, mode, data);
            }
            tar::EntryType::Symlink => {
                let target = entry.link_name().unwrap().unwrap();
                into.symlink(&path, target.to_str().unwrap());
            }
            other => panic!("{what}: entry type {other:?}"),
        }
        paths.push(path.trim_end_matches('/').to_owned());
    }
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted, "layer entries in path order");
    paths
}

/// The Debian packages, downloaded once per target directory.
fn debs(arch: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("image-debs");
    vcsync_image::fetch_debs(&dir, arch).unwrap_or_else(|e| {
        panic!(
            "the base's Debian packages ({}): {e:#}\n\
             this test needs a Debian host with apt's package lists (`apt-get update`)",
            DEBIAN_PACKAGES.join(" ")
        )
    })
}

#[test]
fn an_image_of_the_test_binary_holds_what_it_runs_and_nothing_else() {
    let binary_path = env!("CARGO_BIN_EXE_vcsync");
    let binary = std::fs::read(binary_path).unwrap();
    let elf = Elf::parse(&binary).unwrap();
    let debs = debs(elf.arch().unwrap().0);
    let epoch = 1_700_000_000;
    let options = Options {
        source_date_epoch: epoch,
        revision: Some("test".to_owned()),
        // The debug binary is large; speed matters more than size here.
        compression: 1,
        ..Options::default()
    };
    let image = Image::build(&binary, &debs, &options).unwrap();

    // Reproducible: the same inputs give the same digest.
    let again = Image::build(&binary, &debs, &options).unwrap();
    assert_eq!(image.manifest_digest, again.manifest_digest, "reproducible");

    // The archive: an OCI layout whose every blob is named by its digest.
    let tmp = tempfile::tempdir().unwrap();
    let archive_path = tmp.path().join("vcsync.oci.tar");
    image.write_archive(&archive_path, epoch).unwrap();
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let bytes = std::fs::read(&archive_path).unwrap();
    for entry in tar::Archive::new(bytes.as_slice()).entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type().is_file() {
            let path = entry.path().unwrap().to_str().unwrap().to_owned();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            files.insert(path, data);
        }
    }
    for (path, data) in &files {
        if let Some(hex) = path.strip_prefix("blobs/sha256/") {
            assert_eq!(sha256(data), format!("sha256:{hex}"), "{path}");
        }
    }
    let blob = |digest: &Value| -> &Vec<u8> {
        let d = digest.as_str().unwrap().strip_prefix("sha256:").unwrap();
        &files[&format!("blobs/sha256/{d}")]
    };
    let json = |data: &[u8]| -> Value { serde_json::from_slice(data).unwrap() };
    assert_eq!(
        json(&files["oci-layout"]),
        serde_json::json!({"imageLayoutVersion": "1.0.0"})
    );
    let index = json(&files["index.json"]);
    assert_eq!(index["schemaVersion"], 2);
    let [m] = index["manifests"].as_array().unwrap().as_slice() else {
        panic!("one manifest: {index}")
    };
    assert_eq!(
        m["annotations"]["org.opencontainers.image.ref.name"],
        format!("vcsync:{VERSION}")
    );
    assert_eq!(m["digest"], image.manifest_digest);
    let manifest_bytes = blob(&m["digest"]);
    assert_eq!(m["size"], manifest_bytes.len());
    let manifest = json(manifest_bytes);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let config = json(blob(&manifest["config"]["digest"]));

    // The config: what the manifests and the Containerfile run.
    let c = &config["config"];
    assert_eq!(c["User"], format!("{UID}:{GID}"));
    assert_eq!(c["Entrypoint"], serde_json::json!([ENTRYPOINT]));
    assert_eq!(c["Cmd"], serde_json::json!(CMD));
    assert_eq!(c["Env"], serde_json::json!([format!("PATH={PATH}")]));
    assert_eq!(config["os"], "linux");
    assert_eq!(config["architecture"], "amd64");
    for (key, value) in vcsync_image::static_labels() {
        assert_eq!(c["Labels"][&key], value, "label {key}");
    }
    let packages = c["Labels"][vcsync_image::LABEL_DEBIAN_PACKAGES]
        .as_str()
        .unwrap();
    for p in DEBIAN_PACKAGES {
        assert!(
            packages
                .split(' ')
                .any(|pv| pv.starts_with(&format!("{p}="))),
            "{p} in {packages}"
        );
    }

    // Docker's manifest.json names the same blobs.
    let docker = json(&files["manifest.json"]);
    assert_eq!(
        docker[0]["RepoTags"],
        serde_json::json!([format!("vcsync:{VERSION}")])
    );
    assert_eq!(
        docker[0]["Config"],
        format!(
            "blobs/sha256/{}",
            manifest["config"]["digest"].as_str().unwrap()[7..].to_owned()
        )
    );

    // The layers: diff_ids are the uncompressed tars; unpacked in order.
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(
        layers.len(),
        config["rootfs"]["diff_ids"].as_array().unwrap().len()
    );
    let mut rootfs = Tree::default();
    let mut layer_paths = Vec::new();
    for (layer, diff_id) in layers
        .iter()
        .zip(config["rootfs"]["diff_ids"].as_array().unwrap())
    {
        assert_eq!(
            layer["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        let tar = gunzip(blob(&layer["digest"]));
        assert_eq!(&sha256(&tar), diff_id);
        layer_paths.push(read_layer(&tar, epoch, &mut rootfs));
        assert_eq!(
            docker[0]["Layers"][layer_paths.len() - 1],
            format!("blobs/sha256/{}", &layer["digest"].as_str().unwrap()[7..])
        );
    }
    assert_eq!(
        layer_paths.last().unwrap().last().map(String::as_str),
        Some(&ENTRYPOINT[1..]),
        "the top layer is the binary"
    );

    // The binary at the entrypoint, as built.
    let Some((_, Entry::File { mode, data })) = rootfs.resolve(ENTRYPOINT) else {
        panic!("no file at {ENTRYPOINT}")
    };
    assert_eq!(*mode, 0o755);
    assert!(*data == binary, "{ENTRYPOINT} is the test binary");

    // Its loader and every library it links, transitively, where the loader looks.
    let interpreter = elf.interpreter.clone().unwrap();
    let (loader_at, _) = rootfs
        .resolve(&interpreter)
        .unwrap_or_else(|| panic!("no ELF interpreter {interpreter}"));
    let multiarch = Path::new(&loader_at)
        .parent()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let search = [
        multiarch.as_str(),
        "lib/x86_64-linux-gnu",
        "usr/lib/x86_64-linux-gnu",
        "lib64",
        "usr/lib64",
        "lib",
        "usr/lib",
    ];
    let mut needed: Vec<(String, String)> = elf
        .needed
        .iter()
        .map(|n| ("vcsync".to_owned(), n.clone()))
        .collect();
    let mut found: BTreeMap<String, String> = BTreeMap::new();
    found.insert(interpreter.clone(), loader_at.clone());
    assert!(!needed.is_empty(), "the binary links something");
    while let Some((by, name)) = needed.pop() {
        if found.contains_key(&name) {
            continue;
        }
        let (at, entry) = search
            .iter()
            .find_map(|d| rootfs.resolve(&format!("{d}/{name}")))
            .unwrap_or_else(|| panic!("{name}, needed by {by}, is not in the image"));
        let Entry::File { data, .. } = entry else {
            unreachable!()
        };
        let lib = Elf::parse(data).unwrap();
        needed.extend(lib.needed.into_iter().map(|n| (name.clone(), n)));
        found.insert(name, at);
    }

    // The CA bundle, the user and group.
    let text = |path: &str| -> String {
        match rootfs.resolve(path) {
            Some((_, Entry::File { data, .. })) => String::from_utf8(data.clone()).unwrap(),
            _ => panic!("no file {path}"),
        }
    };
    let certs = text(CA_BUNDLE)
        .matches("-----BEGIN CERTIFICATE-----")
        .count();
    assert!(certs > 100, "{certs} certificates in {CA_BUNDLE}");
    assert!(
        text("/etc/passwd")
            .lines()
            .any(|l| l.starts_with(&format!("{USER_NAME}:x:{UID}:{GID}:"))),
        "/etc/passwd names {UID}"
    );
    assert!(
        text("/etc/group")
            .lines()
            .any(|l| l == format!("{USER_NAME}:x:{GID}:")),
        "/etc/group names {GID}"
    );

    // Nothing else: every file is one of those, and no shell or package
    // manager is anywhere.
    let mut expected: BTreeSet<String> = found.values().cloned().collect();
    expected.extend(
        [
            ENTRYPOINT,
            CA_BUNDLE,
            "/etc/passwd",
            "/etc/group",
            "/etc/nsswitch.conf",
        ]
        .map(|p| p[1..].to_owned()),
    );
    for (path, entry) in rootfs.entries() {
        let name = path.rsplit('/').next().unwrap();
        assert!(
            ![
                "sh", "bash", "dash", "ash", "busybox", "apt", "apt-get", "dpkg"
            ]
            .contains(&name),
            "{path} in the image"
        );
        if let Entry::File { .. } = entry {
            assert!(
                expected.contains(path)
                    || (path.starts_with("usr/share/doc/") && path.ends_with("/copyright")),
                "unexpected file {path} in the image"
            );
        }
    }
    for path in [
        "bin/sh",
        "usr/bin/sh",
        "bin",
        "usr/bin",
        "sbin",
        "var/lib/dpkg",
    ] {
        assert!(rootfs.resolve(path).is_none(), "{path} in the image");
    }
    assert_eq!(
        rootfs.resolve("tmp").map(|(_, e)| e.clone()),
        Some(Entry::Dir { mode: 0o1777 })
    );

    // And it runs on those files alone: the image's loader, told to use
    // only the image's libraries, starts the binary.
    let unpacked = tmp.path().join("rootfs");
    rootfs.write_to(&unpacked).unwrap();
    let lib_dirs: Vec<String> = found
        .values()
        .filter_map(|p| Some(unpacked.join(Path::new(p).parent()?).display().to_string()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let out = Command::new(unpacked.join(&loader_at))
        .arg("--inhibit-cache")
        .arg("--library-path")
        .arg(lib_dirs.join(":"))
        .arg(unpacked.join(&ENTRYPOINT[1..]))
        .arg("--version")
        .env_clear()
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the image's loader could not run vcsync: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("vcsync {VERSION}")
    );

    // As a container runtime starts it: the unpacked image as the root directory (in new
    // user, mount and PID namespaces, so no privilege is needed), the kernel executing the
    // entrypoint through the image's own ELF interpreter path, with the image's environment.
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "--pid", "--fork"])
        .arg(format!("--root={}", unpacked.display()))
        .arg("--wd=/")
        .arg(ENTRYPOINT)
        .args(["policy", "check", "--help"])
        .env_clear()
        .env("PATH", PATH)
        .output()
        .expect("unshare (util-linux) runs");
    assert!(
        out.status.success(),
        "vcsync did not run inside the unpacked image: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Usage:"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
