//! Images: is it there, pull it from a registry, import it from a tarball.

use std::collections::BTreeMap;
use std::io::Read;

use serde::Deserialize;

use super::call::{Deadline, Req};
use super::errors::{engine_message, Meaning};
use super::transport::{query_value, ReqBody};
use super::{check_image, null_default, Engine};
use crate::{Error, Result};

/// What `GET /images/{name}/json` says (only the fields we read).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct ImageInfo {
    /// The image id, `sha256:...`.
    pub id: String,
    /// The names it is tagged with.
    #[serde(default, deserialize_with = "null_default")]
    pub repo_tags: Vec<String>,
    /// When it was made (RFC 3339).
    #[serde(default)]
    pub created: String,
    /// Its size in bytes.
    #[serde(default)]
    pub size: i64,
    /// `linux` for the images we run.
    #[serde(default)]
    pub os: String,
    /// Like `amd64`.
    #[serde(default)]
    pub architecture: String,
    /// The defaults a container of it starts with.
    #[serde(default, deserialize_with = "null_default")]
    pub config: ImageConfig,
}

/// The container defaults an image carries (only the fields we read).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
#[non_exhaustive]
pub struct ImageConfig {
    /// The default user, or empty for root.
    #[serde(default, deserialize_with = "null_default")]
    pub user: String,
    /// `NAME=value` entries.
    #[serde(default, deserialize_with = "null_default")]
    pub env: Vec<String>,
    /// The image's labels.
    #[serde(default, deserialize_with = "null_default")]
    pub labels: BTreeMap<String, String>,
    /// The default working directory.
    #[serde(default, deserialize_with = "null_default")]
    pub working_dir: String,
    /// The entrypoint, if any.
    #[serde(default, deserialize_with = "null_default")]
    pub entrypoint: Vec<String>,
    /// The default command, if any.
    #[serde(default, deserialize_with = "null_default")]
    pub cmd: Vec<String>,
}

/// One line of a pull's progress.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PullProgress {
    /// What is happening, like `Pulling fs layer`, `Downloading`, `Pull complete`.
    pub status: String,
    /// The layer (or tag) the line is about, if any.
    pub id: Option<String>,
    /// The engine's progress bar text, if any.
    pub progress: Option<String>,
    /// Bytes done, when known.
    pub current: Option<u64>,
    /// Bytes in all, when known.
    pub total: Option<u64>,
}

/// One line of a pull or import stream, as the engine writes it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Line {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    progress: Option<String>,
    #[serde(default)]
    progress_detail: Option<Detail>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_detail: Option<ErrorDetail>,
}

#[derive(Deserialize)]
struct Detail {
    current: Option<u64>,
    total: Option<u64>,
}

#[derive(Deserialize)]
struct ErrorDetail {
    message: Option<String>,
}

const IMAGE_404: &[(u16, Meaning)] = &[(
    404,
    Meaning::NotFound(
        "image",
        "; build it (docker build) or pull it (docker pull)",
    ),
)];
const PULL_404: &[(u16, Meaning)] = &[(
    404,
    Meaning::NotFound("image", "; check the name and that the registry has it"),
)];

/// Splits `host:5000/name:tag` into `host:5000/name` and `tag` (`latest` when none is given), and
/// `name@sha256:...` into the name and the digest.
fn split_reference(reference: &str) -> (&str, &str) {
    if let Some((repo, digest)) = reference.split_once('@') {
        return (repo, digest);
    }
    let name_start = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[name_start..].rfind(':') {
        Some(i) => (
            &reference[..name_start + i],
            &reference[name_start + i + 1..],
        ),
        None => (reference, "latest"),
    }
}

/// Reads a pull or import stream to its end; the first in-band `error` line fails the call.
fn read_stream(
    response: &mut super::call::Response,
    mut each: impl FnMut(&PullProgress),
) -> Result<()> {
    let call = response.call().to_string();
    let mut failure = None;
    response.for_each_line(|bytes| {
        let line: Line = serde_json::from_slice(bytes).map_err(|e| Error::Protocol {
            call: call.clone(),
            detail: format!("progress line is not the expected JSON: {e}"),
        })?;
        if line.error.is_some() || line.error_detail.is_some() {
            if failure.is_none() {
                let message = line
                    .error_detail
                    .and_then(|d| d.message)
                    .or(line.error)
                    .unwrap_or_default();
                failure = Some(engine_message(message.as_bytes()));
            }
            return Ok(());
        }
        let (current, total) = line
            .progress_detail
            .map_or((None, None), |d| (d.current, d.total));
        each(&PullProgress {
            status: line.status.unwrap_or_default(),
            id: line.id,
            progress: line.progress,
            current,
            total,
        });
        Ok(())
    })?;
    match failure {
        // The engine said 200 and then reported the failure in the stream.
        Some(message) => Err(Error::Api {
            call,
            status: response.status(),
            message,
        }),
        None => Ok(()),
    }
}

impl Engine {
    /// The image with this name or id, or `None` when the engine has no such image.
    pub fn image_inspect(&self, name: &str) -> Result<Option<ImageInfo>> {
        check_image("image", name)?;
        let response = self.send(Req::new("GET", format!("/images/{name}/json")))?;
        match response.status() {
            200 => response.json().map(Some),
            404 => {
                response.finish()?;
                Ok(None)
            }
            _ => Err(response.error(name, IMAGE_404)),
        }
    }

    /// Pulls `reference` (`host:port/name:tag`; `latest` when no tag is given), calling
    /// `progress` for each progress line. Reads the stream to its end: the engine answers 200 and
    /// reports most failures inside the stream, which fail the call with the image named.
    ///
    /// No deadline: a large image takes as long as it takes, and progress shows it moving.
    pub fn image_pull(
        &self,
        reference: &str,
        progress: &mut dyn FnMut(&PullProgress),
    ) -> Result<()> {
        check_image("image", reference)?;
        let (repo, tag) = split_reference(reference);
        let path = format!(
            "/images/create?fromImage={}&tag={}",
            query_value(repo),
            query_value(tag)
        );
        let req = Req::new("POST", path)
            .deadline(Deadline::Unlimited)
            .call(format!("pull image {reference}"));
        let mut response = self.send(req)?;
        if response.status() != 200 {
            return Err(response.error(reference, PULL_404));
        }
        read_stream(&mut response, progress)
    }

    /// Imports a root filesystem tarball as image `repo:tag` (`POST /images/create?fromSrc=-`),
    /// streaming `tar` to the engine without holding it in memory. `changes` are Dockerfile
    /// instructions applied to the image config, like `ENV PATH=/bin` or `WORKDIR /workspace`.
    ///
    /// The tag travels inside `repo=` (Podman ignores a separate `tag`). No deadline: the
    /// tarball's size decides.
    pub fn image_import(
        &self,
        mut tar: impl Read,
        repo: &str,
        tag: &str,
        changes: &[String],
    ) -> Result<()> {
        let tag = if tag.is_empty() { "latest" } else { tag };
        let name = format!("{repo}:{tag}");
        check_image("repo", repo)?;
        check_image("tag", tag)?;
        let mut path = format!("/images/create?fromSrc=-&repo={}", query_value(&name));
        for change in changes {
            path.push_str("&changes=");
            path.push_str(&query_value(change));
        }
        let mut req = Req::new("POST", path)
            .deadline(Deadline::Unlimited)
            .call(format!("import image {name}"));
        req.body = ReqBody::Stream {
            content_type: "application/x-tar",
            reader: &mut tar,
        };
        let mut response = self.send(req)?;
        if response.status() != 200 {
            return Err(response.error(&name, &[]));
        }
        read_stream(&mut response, |_| {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_repo_and_tag() {
        assert_eq!(split_reference("busybox"), ("busybox", "latest"));
        assert_eq!(split_reference("busybox:1.36"), ("busybox", "1.36"));
        assert_eq!(
            split_reference("127.0.0.1:5000/herdctl/runtime"),
            ("127.0.0.1:5000/herdctl/runtime", "latest")
        );
        assert_eq!(
            split_reference("127.0.0.1:5000/x:v2"),
            ("127.0.0.1:5000/x", "v2")
        );
        assert_eq!(split_reference("x@sha256:abcd"), ("x", "sha256:abcd"));
    }
}
