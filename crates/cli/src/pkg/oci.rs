//! Writing an OCI image: one gzip layer, its config, a manifest and an
//! index, as an `oci-archive` tar and as an OCI image-layout directory.
//!
//! The output is reproducible: the same files, metadata, name and time give
//! the same bytes, and so the same digests. Every tar entry (of the layer
//! and of the archive) is a plain ustar header in sorted order, owned by
//! 0:0, with the one given modification time and no extended headers; the
//! gzip header has no time or name; JSON documents have their keys sorted
//! (oci-spec keeps annotations and labels in hash maps, which serde would
//! write in a different order every run).
//!
//! How the image is named ([`ImageName`]), following what `docker save`
//! and `ctr export` write in `index.json`: `io.containerd.image.name` is
//! the full reference (`docker.io/library/NAME:TAG`), which `ctr images
//! import` and `podman load` name the image by, and
//! `org.opencontainers.image.ref.name` is the tag alone, as the image-layout
//! spec defines it and skopeo's `oci-archive:FILE:TAG` looks it up. The
//! archive also holds Docker's `manifest.json` (as `docker save` has since
//! moby 25), so a Docker engine without the containerd image store, which
//! reads only that file, loads it too.
//!
//! Not here: what goes in the image (the kernel, urunc's metadata:
//! [`super::urunc`]), and anything about registries: no push, no
//! multi-platform index, no signatures.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};
use std::path::Path;
use std::str::FromStr;

use flate2::{Compression, GzBuilder};
use oci_spec::distribution::Reference;
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, DescriptorBuilder, Digest, ImageConfigurationBuilder, ImageIndexBuilder,
    ImageManifestBuilder, MediaType, OciLayoutBuilder, Os, PlatformBuilder, RootFsBuilder,
};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

/// A regular file in the layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerFile {
    /// Its path from the root, without a leading `/` (`unikernel/hello`).
    /// Its parent directories are added to the layer (mode 0755).
    pub path: String,
    /// Permission bits (0o755, 0o644).
    pub mode: u32,
    pub data: Vec<u8>,
}

/// An image's name, in the forms each tool looks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageName {
    /// The fully qualified reference, `docker.io/library/hello:latest`.
    pub full: String,
    /// The tag alone, `latest`.
    pub tag: String,
    /// The short form Docker shows, `hello:latest`.
    pub familiar: String,
}

impl ImageName {
    /// Parses `NAME[:TAG]` as Docker does (`hello` is
    /// `docker.io/library/hello:latest`). A digest is refused: the image
    /// is named by a tag.
    pub fn parse(text: &str) -> Result<ImageName, String> {
        let usage = "give --tag NAME[:TAG], e.g. --tag slides:v1 or --tag registry.example.com/team/slides:v1";
        let reference =
            Reference::from_str(text).map_err(|e| format!("`{text}` is not a valid image reference ({e}); {usage}"))?;
        let (Some(tag), None) = (reference.tag(), reference.digest()) else {
            return Err(format!(
                "`{text}` names an image by digest, and a new image is named by a tag; {usage}"
            ));
        };
        let repository = reference.repository();
        let familiar = match reference.registry() {
            "docker.io" => repository.strip_prefix("library/").unwrap_or(repository).to_owned(),
            registry => format!("{registry}/{repository}"),
        };
        Ok(ImageName {
            full: format!("{}/{repository}:{tag}", reference.registry()),
            tag: tag.to_owned(),
            familiar: format!("{familiar}:{tag}"),
        })
    }
}

/// What an image is made of.
#[derive(Debug, Clone)]
pub struct ImageInput<'a> {
    /// The layer's files, in any order.
    pub files: &'a [LayerFile],
    /// On the manifest, and as the config's labels.
    pub annotations: &'a BTreeMap<String, String>,
    /// The config's `Cmd`; none when empty.
    pub cmd: &'a [String],
    pub name: &'a ImageName,
    /// Every tar entry's modification time, in seconds since 1970.
    pub mtime: u64,
    /// The config's `created`, in seconds since 1970; none when `None`.
    pub created: Option<u64>,
}

/// A finished image: its blobs and the documents that point at them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Content by SHA-256 digest (hexadecimal): the layer, the config and
    /// the manifest.
    pub blobs: BTreeMap<String, Vec<u8>>,
    /// The manifest's digest, `sha256:...`: the image's identity.
    pub manifest_digest: String,
    /// The layer's uncompressed digest (the config's `diff_ids`).
    pub diff_id: String,
    /// `index.json`.
    pub index: Vec<u8>,
    /// Docker's `manifest.json` (archive only).
    pub docker_manifest: Vec<u8>,
    /// `oci-layout`.
    pub oci_layout: Vec<u8>,
    /// The time every archive entry carries.
    mtime: u64,
}

/// `sha256:HEX` of `data`, and HEX alone.
pub fn sha256(data: &[u8]) -> (String, String) {
    let hex: String = Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect();
    (format!("sha256:{hex}"), hex)
}

/// JSON with every object's keys in order, so equal documents are equal
/// bytes whatever map type the structures used.
pub fn canonical_json(value: &impl Serialize) -> Vec<u8> {
    fn sort(value: serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::Object(map) => {
                let sorted: BTreeMap<String, serde_json::Value> =
                    map.into_iter().map(|(key, value)| (key, sort(value))).collect();
                serde_json::Value::Object(sorted.into_iter().collect())
            }
            serde_json::Value::Array(items) => serde_json::Value::Array(items.into_iter().map(sort).collect()),
            other => other,
        }
    }
    // Serializing these structures to a Value cannot fail: they hold only
    // strings, numbers, lists and string-keyed maps.
    let value = serde_json::to_value(value).map(sort).unwrap_or_default();
    serde_json::to_vec(&value).unwrap_or_default()
}

/// A ustar header for an entry owned by 0:0, its checksum set.
fn header(path: &str, kind: tar::EntryType, mode: u32, size: u64, mtime: u64) -> io::Result<tar::Header> {
    let mut header = tar::Header::new_ustar();
    header.set_path(path)?;
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(mtime);
    header.set_cksum();
    Ok(header)
}

/// A tar of `files` (path → (mode, bytes)) and the directories above them,
/// in sorted order.
fn tar_of(files: &BTreeMap<String, (u32, &[u8])>, mtime: u64) -> io::Result<Vec<u8>> {
    let mut dirs = BTreeSet::new();
    for path in files.keys() {
        let mut prefix = String::new();
        let components: Vec<&str> = path.split('/').collect();
        for component in &components[..components.len() - 1] {
            prefix.push_str(component);
            prefix.push('/');
            dirs.insert(prefix.clone());
        }
    }
    // Directories as `dir/`, which sorts before its contents.
    let mut entries: BTreeMap<&str, Option<(u32, &[u8])>> = dirs.iter().map(|d| (d.as_str(), None)).collect();
    entries.extend(files.iter().map(|(path, file)| (path.as_str(), Some(*file))));
    let mut builder = tar::Builder::new(Vec::new());
    for (path, file) in entries {
        match file {
            None => builder.append(&header(path, tar::EntryType::Directory, 0o755, 0, mtime)?, io::empty())?,
            Some((mode, data)) => builder.append(
                &header(path, tar::EntryType::Regular, mode, data.len() as u64, mtime)?,
                data,
            )?,
        }
    }
    builder.into_inner()
}

/// Gzip with a fixed header: no name, no time, OS unknown.
fn gzip(data: &[u8]) -> io::Result<Vec<u8>> {
    let mut encoder = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), Compression::default());
    encoder.write_all(data)?;
    encoder.finish()
}

/// RFC 3339 (UTC) for `secs` since 1970.
pub fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Days to a civil date (Howard Hinnant's `civil_from_days`), for
    // dates from 1970 on.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn spec_error(e: oci_spec::OciSpecError) -> String {
    format!("cannot describe the image: {e}")
}

fn descriptor(media_type: MediaType, digest: &str, size: usize) -> Result<DescriptorBuilder, String> {
    Ok(DescriptorBuilder::default()
        .media_type(media_type)
        .digest(Digest::from_str(digest).map_err(spec_error)?)
        .size(size as u64))
}

impl Image {
    /// Builds the image: the layer, the config, the manifest, the index.
    pub fn build(input: &ImageInput<'_>) -> Result<Image, String> {
        let files: BTreeMap<String, (u32, &[u8])> = input
            .files
            .iter()
            .map(|f| (f.path.clone(), (f.mode, f.data.as_slice())))
            .collect();
        let layer_tar = tar_of(&files, input.mtime).map_err(|e| format!("cannot write the layer: {e}"))?;
        let (diff_id, _) = sha256(&layer_tar);
        let layer = gzip(&layer_tar).map_err(|e| format!("cannot compress the layer: {e}"))?;
        let (layer_digest, layer_hex) = sha256(&layer);

        let labels: std::collections::HashMap<String, String> =
            input.annotations.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let mut config = ConfigBuilder::default().labels(labels.clone());
        if !input.cmd.is_empty() {
            config = config.cmd(input.cmd.to_vec());
        }
        let mut image_config = ImageConfigurationBuilder::default()
            .architecture(Arch::Amd64)
            .os(Os::Linux)
            .config(config.build().map_err(spec_error)?)
            .rootfs(
                RootFsBuilder::default()
                    .typ("layers")
                    .diff_ids(vec![diff_id.clone()])
                    .build()
                    .map_err(spec_error)?,
            );
        if let Some(created) = input.created {
            image_config = image_config.created(rfc3339(created));
        }
        let config_json = canonical_json(&image_config.build().map_err(spec_error)?);
        let (config_digest, config_hex) = sha256(&config_json);

        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(
                descriptor(MediaType::ImageConfig, &config_digest, config_json.len())?
                    .build()
                    .map_err(spec_error)?,
            )
            .layers(vec![descriptor(MediaType::ImageLayerGzip, &layer_digest, layer.len())?
                .build()
                .map_err(spec_error)?])
            .annotations(labels)
            .build()
            .map_err(spec_error)?;
        let manifest_json = canonical_json(&manifest);
        let (manifest_digest, manifest_hex) = sha256(&manifest_json);

        let index_annotations: std::collections::HashMap<String, String> = [
            ("io.containerd.image.name".to_owned(), input.name.full.clone()),
            ("org.opencontainers.image.ref.name".to_owned(), input.name.tag.clone()),
        ]
        .into_iter()
        .collect();
        let manifest_descriptor: Descriptor =
            descriptor(MediaType::ImageManifest, &manifest_digest, manifest_json.len())?
                .annotations(index_annotations)
                .platform(
                    PlatformBuilder::default()
                        .architecture(Arch::Amd64)
                        .os(Os::Linux)
                        .build()
                        .map_err(spec_error)?,
                )
                .build()
                .map_err(spec_error)?;
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(vec![manifest_descriptor])
            .build()
            .map_err(spec_error)?;
        let oci_layout = OciLayoutBuilder::default()
            .image_layout_version("1.0.0")
            .build()
            .map_err(spec_error)?;
        // Docker's archive manifest, paths as `docker save` writes them
        // since moby 25 (into the OCI blobs).
        let docker_manifest = serde_json::json!([{
            "Config": format!("blobs/sha256/{config_hex}"),
            "RepoTags": [input.name.familiar],
            "Layers": [format!("blobs/sha256/{layer_hex}")],
        }]);

        Ok(Image {
            blobs: [
                (layer_hex, layer),
                (config_hex, config_json),
                (manifest_hex, manifest_json),
            ]
            .into_iter()
            .collect(),
            manifest_digest,
            diff_id,
            index: canonical_json(&index),
            docker_manifest: canonical_json(&docker_manifest),
            oci_layout: canonical_json(&oci_layout),
            mtime: input.mtime,
        })
    }

    /// The files of the OCI layout: `oci-layout`, `index.json` and the
    /// blobs, by path.
    fn layout_files(&self) -> BTreeMap<String, &[u8]> {
        let mut files: BTreeMap<String, &[u8]> = self
            .blobs
            .iter()
            .map(|(hex, data)| (format!("blobs/sha256/{hex}"), data.as_slice()))
            .collect();
        files.insert("oci-layout".into(), &self.oci_layout);
        files.insert("index.json".into(), &self.index);
        files
    }

    /// The `oci-archive`: the layout's files and Docker's `manifest.json`
    /// in one tar.
    pub fn archive(&self) -> io::Result<Vec<u8>> {
        let mut files: BTreeMap<String, (u32, &[u8])> = self
            .layout_files()
            .into_iter()
            .map(|(path, data)| (path, (0o644, data)))
            .collect();
        files.insert("manifest.json".into(), (0o644, &self.docker_manifest));
        tar_of(&files, self.mtime)
    }

    /// Writes the OCI image layout into `dir`, which exists and is empty.
    pub fn write_layout(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir.join("blobs/sha256"))?;
        for (path, data) in self.layout_files() {
            std::fs::write(dir.join(path), data)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name() -> ImageName {
        ImageName::parse("hello").unwrap()
    }

    fn input<'a>(
        files: &'a [LayerFile],
        annotations: &'a BTreeMap<String, String>,
        cmd: &'a [String],
        name: &'a ImageName,
    ) -> ImageInput<'a> {
        ImageInput {
            files,
            annotations,
            cmd,
            name,
            mtime: 0,
            created: None,
        }
    }

    fn files() -> Vec<LayerFile> {
        vec![
            LayerFile {
                path: "urunc.json".into(),
                mode: 0o644,
                data: b"{}\n".to_vec(),
            },
            LayerFile {
                path: "unikernel/hello".into(),
                mode: 0o755,
                data: b"\x7fELF kernel".to_vec(),
            },
        ]
    }

    fn annotations() -> BTreeMap<String, String> {
        [("com.urunc.unikernel.unikernelType", "mirage"), ("a.b", "c")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn names_take_the_forms_each_tool_reads() {
        assert_eq!(
            ImageName::parse("hello").unwrap(),
            ImageName {
                full: "docker.io/library/hello:latest".into(),
                tag: "latest".into(),
                familiar: "hello:latest".into(),
            }
        );
        let name = ImageName::parse("team/slides:v1").unwrap();
        assert_eq!(
            (name.full.as_str(), name.familiar.as_str()),
            ("docker.io/team/slides:v1", "team/slides:v1")
        );
        let name = ImageName::parse("registry.example.com:5000/team/slides:v1").unwrap();
        assert_eq!(name.full, "registry.example.com:5000/team/slides:v1");
        assert_eq!(name.tag, "v1");
        assert_eq!(name.familiar, name.full);
        for bad in ["", "Hello", "hello:", "hello world", ":v1", "hello:bad/tag"] {
            let err = ImageName::parse(bad).unwrap_err();
            assert!(
                err.contains("not a valid image reference") && !err.contains('\n'),
                "{bad}: {err}"
            );
        }
        let digest = format!("hello@sha256:{}", "a".repeat(64));
        assert!(ImageName::parse(&digest).unwrap_err().contains("by digest"));
    }

    #[test]
    fn sha256_of_known_bytes() {
        assert_eq!(
            sha256(b"").0,
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn json_keys_are_sorted_at_every_level() {
        let map: std::collections::HashMap<&str, serde_json::Value> = [
            ("b", serde_json::json!({"z": 1, "a": [{"y": 2, "x": 3}]})),
            ("a", serde_json::json!(null)),
        ]
        .into_iter()
        .collect();
        assert_eq!(canonical_json(&map), br#"{"a":null,"b":{"a":[{"x":3,"y":2}],"z":1}}"#);
    }

    #[test]
    fn dates_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn the_layer_is_a_sorted_reproducible_gzip_tar() {
        let (files, annotations, name) = (files(), annotations(), name());
        let image = Image::build(&input(&files, &annotations, &[], &name)).unwrap();
        let again = Image::build(&input(&files, &annotations, &[], &name)).unwrap();
        assert_eq!(image, again);

        let manifest: serde_json::Value = serde_json::from_slice(&image.blobs[&image.manifest_digest[7..]]).unwrap();
        let layer_hex = &manifest["layers"][0]["digest"].as_str().unwrap()[7..];
        let layer = &image.blobs[layer_hex];
        // The gzip header: deflate, no flags, no time, OS unknown (255).
        assert_eq!(layer[..4], [0x1f, 0x8b, 8, 0]);
        assert_eq!(layer[4..8], [0, 0, 0, 0]);
        assert_eq!(layer[9], 255);
        let mut tar = Vec::new();
        io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&layer[..]), &mut tar).unwrap();
        assert_eq!(sha256(&tar).0, image.diff_id);
        let mut archive = tar::Archive::new(&tar[..]);
        let entries: Vec<(String, u32, u64, u64, u64, Vec<u8>)> = archive
            .entries()
            .unwrap()
            .map(|entry| {
                let mut entry = entry.unwrap();
                let header = entry.header().clone();
                let mut data = Vec::new();
                io::Read::read_to_end(&mut entry, &mut data).unwrap();
                (
                    String::from_utf8(header.path_bytes().into_owned()).unwrap(),
                    header.mode().unwrap(),
                    header.uid().unwrap(),
                    header.gid().unwrap(),
                    header.mtime().unwrap(),
                    data,
                )
            })
            .collect();
        let paths: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(paths, ["unikernel/", "unikernel/hello", "urunc.json"]);
        assert_eq!(entries[0].1, 0o755);
        assert_eq!((entries[1].1, entries[1].5.as_slice()), (0o755, &b"\x7fELF kernel"[..]));
        assert_eq!(entries[2].1, 0o644);
        assert!(entries.iter().all(|e| (e.2, e.3, e.4) == (0, 0, 0)));
    }

    #[test]
    fn config_manifest_and_index_carry_what_the_tools_read() {
        let (files, annotations, name) = (files(), annotations(), name());
        let cmd = ["a".to_owned(), "b".to_owned()];
        let mut with_time = input(&files, &annotations, &cmd, &name);
        with_time.created = Some(1_700_000_000);
        with_time.mtime = 1_700_000_000;
        let image = Image::build(&with_time).unwrap();
        let blob = |digest: &str| -> serde_json::Value { serde_json::from_slice(&image.blobs[&digest[7..]]).unwrap() };

        let manifest = blob(&image.manifest_digest);
        assert_eq!(manifest["schemaVersion"], 2);
        assert_eq!(manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json");
        assert_eq!(manifest["annotations"]["com.urunc.unikernel.unikernelType"], "mirage");
        assert_eq!(
            manifest["config"]["mediaType"],
            "application/vnd.oci.image.config.v1+json"
        );
        assert_eq!(
            manifest["layers"][0]["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        let config = blob(manifest["config"]["digest"].as_str().unwrap());
        assert_eq!(config["architecture"], "amd64");
        assert_eq!(config["os"], "linux");
        assert_eq!(config["created"], "2023-11-14T22:13:20Z");
        assert_eq!(config["config"]["Cmd"], serde_json::json!(["a", "b"]));
        assert_eq!(config["config"]["Labels"]["a.b"], "c");
        assert_eq!(
            config["rootfs"],
            serde_json::json!({"type": "layers", "diff_ids": [image.diff_id]})
        );

        let index: serde_json::Value = serde_json::from_slice(&image.index).unwrap();
        assert_eq!(index["schemaVersion"], 2);
        let entry = &index["manifests"][0];
        assert_eq!(entry["digest"], image.manifest_digest.as_str());
        assert_eq!(
            entry["annotations"]["io.containerd.image.name"],
            "docker.io/library/hello:latest"
        );
        assert_eq!(entry["annotations"]["org.opencontainers.image.ref.name"], "latest");
        assert_eq!(
            entry["platform"],
            serde_json::json!({"architecture": "amd64", "os": "linux"})
        );
        assert_eq!(image.oci_layout, br#"{"imageLayoutVersion":"1.0.0"}"#);

        // Without a time or arguments: no `created`, no `Cmd`.
        let image = Image::build(&input(&files, &annotations, &[], &name)).unwrap();
        let manifest: serde_json::Value = serde_json::from_slice(&image.blobs[&image.manifest_digest[7..]]).unwrap();
        let config: serde_json::Value =
            serde_json::from_slice(&image.blobs[&manifest["config"]["digest"].as_str().unwrap()[7..]]).unwrap();
        assert!(
            config.get("created").is_none() && config["config"].get("Cmd").is_none(),
            "{config}"
        );
    }

    #[test]
    fn different_inputs_give_different_manifests() {
        let (files, annotations, name) = (files(), annotations(), name());
        let base = Image::build(&input(&files, &annotations, &[], &name)).unwrap();
        let cmd = ["x".to_owned()];
        let with_cmd = Image::build(&input(&files, &annotations, &cmd, &name)).unwrap();
        assert_ne!(base.manifest_digest, with_cmd.manifest_digest);
        let mut later = input(&files, &annotations, &[], &name);
        later.mtime = 1;
        assert_ne!(base.manifest_digest, Image::build(&later).unwrap().manifest_digest);
        // The name is in the index only, not in the image.
        let other = ImageName::parse("other:v2").unwrap();
        let renamed = Image::build(&input(&files, &annotations, &[], &other)).unwrap();
        assert_eq!(base.manifest_digest, renamed.manifest_digest);
        assert_ne!(base.index, renamed.index);
    }

    #[test]
    fn the_archive_holds_the_layout_and_dockers_manifest() {
        let (files, annotations, name) = (files(), annotations(), name());
        let image = Image::build(&input(&files, &annotations, &[], &name)).unwrap();
        let archive = image.archive().unwrap();
        assert_eq!(archive, image.archive().unwrap());
        let paths: Vec<String> = tar::Archive::new(&archive[..])
            .entries()
            .unwrap()
            .map(|e| String::from_utf8(e.unwrap().path_bytes().into_owned()).unwrap())
            .collect();
        let mut blobs: Vec<String> = image.blobs.keys().map(|hex| format!("blobs/sha256/{hex}")).collect();
        blobs.sort();
        let mut expected = vec!["blobs/".to_owned(), "blobs/sha256/".to_owned()];
        expected.extend(blobs);
        expected.extend(["index.json", "manifest.json", "oci-layout"].map(String::from));
        assert_eq!(paths, expected);
        let docker: serde_json::Value = serde_json::from_slice(&image.docker_manifest).unwrap();
        assert_eq!(docker[0]["RepoTags"], serde_json::json!(["hello:latest"]));

        let dir = tempfile::tempdir().unwrap();
        image.write_layout(dir.path()).unwrap();
        assert_eq!(std::fs::read(dir.path().join("index.json")).unwrap(), image.index);
        assert!(!dir.path().join("manifest.json").exists());
        for (hex, data) in &image.blobs {
            assert_eq!(&std::fs::read(dir.path().join("blobs/sha256").join(hex)).unwrap(), data);
        }
    }
}
