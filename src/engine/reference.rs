//! Image references, normalized as Docker does (`alpine` → `docker.io/library/alpine:latest`), their
//! familiar form for `RepoTags` (`alpine:3.20`), and the matching of a reference against the two name
//! annotations of a store's `index.json` entries.

use super::digest::Digest;
use super::error::{Error, Result};

/// Annotation holding the full image name (containerd, docker).
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// Annotation holding a tag or a full reference (OCI image layout).
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

const DEFAULT_DOMAIN: &str = "docker.io";

/// A parsed reference: a name with an optional tag, a name with a digest, or a bare digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// Full repository name (`docker.io/library/alpine`), `None` for a bare digest.
    pub repository: Option<String>,
    /// The tag, `latest` when a name has neither tag nor digest.
    pub tag: Option<String>,
    /// The digest, for `name@sha256:…` and bare `sha256:…`.
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parse and normalize a reference.
    ///
    /// # Errors
    /// [`Error::InvalidReference`] naming the string when it is not a valid reference.
    pub fn parse(s: &str) -> Result<Reference> {
        let bad = |reason: &str| Error::InvalidReference {
            reference: s.to_string(),
            reason: reason.to_string(),
        };
        if s.is_empty() {
            return Err(bad("empty reference"));
        }
        if s.starts_with("sha256:") || s.starts_with("sha512:") {
            let digest = s.parse::<Digest>().map_err(|e| bad(&e.to_string()))?;
            return Ok(Reference {
                repository: None,
                tag: None,
                digest: Some(digest),
            });
        }
        let (name, digest) = match s.split_once('@') {
            Some((n, d)) => (
                n,
                Some(d.parse::<Digest>().map_err(|e| bad(&e.to_string()))?),
            ),
            None => (s, None),
        };
        // A tag is after the last ':' that follows the last '/' (a ':' before it is a registry port).
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        let (repo, tag) = match name[last_slash..].rfind(':') {
            Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
            None => (name, None),
        };
        if let Some(t) = tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && !t.starts_with(['.', '-'])
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
            if !ok {
                return Err(bad(&format!("invalid tag {t:?}")));
            }
        }
        let mut comps: Vec<&str> = repo.split('/').collect();
        let domain = if comps.len() > 1
            && comps.first().is_some_and(|c| {
                c.contains('.')
                    || c.contains(':')
                    || *c == "localhost"
                    || c.chars().any(|ch| ch.is_ascii_uppercase())
            }) {
            let d = comps.remove(0);
            if !d
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
            {
                return Err(bad(&format!("invalid registry {d:?}")));
            }
            d.to_string()
        } else {
            DEFAULT_DOMAIN.to_string()
        };
        let domain = if domain == "index.docker.io" {
            DEFAULT_DOMAIN.to_string()
        } else {
            domain
        };
        for c in &comps {
            let ok = !c.is_empty()
                && c.chars().all(|ch| {
                    ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '.' | '_' | '-')
                })
                && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
                && c.ends_with(|ch: char| ch.is_ascii_alphanumeric());
            if !ok {
                return Err(bad(&format!(
                    "repository name component {c:?} must be lowercase letters, digits and separators"
                )));
            }
        }
        if domain == DEFAULT_DOMAIN && comps.len() == 1 {
            comps.insert(0, "library");
        }
        let repository = format!("{domain}/{}", comps.join("/"));
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference {
            repository: Some(repository),
            tag,
            digest,
        })
    }

    /// The full name with tag (`docker.io/library/alpine:3.20`), `None` without a tag.
    pub fn full_name(&self) -> Option<String> {
        Some(format!(
            "{}:{}",
            self.repository.as_ref()?,
            self.tag.as_ref()?
        ))
    }

    /// Docker's short form (`alpine:3.20`, `user/app:1`, `registry:5000/a:b`), `None` without a tag.
    pub fn familiar_name(&self) -> Option<String> {
        let repo = self.repository.as_ref()?;
        let short = repo
            .strip_prefix("docker.io/library/")
            .filter(|r| !r.contains('/'))
            .or_else(|| repo.strip_prefix("docker.io/"))
            .unwrap_or(repo);
        Some(format!("{short}:{}", self.tag.as_ref()?))
    }
}

/// The familiar form of a full name, or the name unchanged when it does not parse.
pub fn familiar(full: &str) -> String {
    Reference::parse(full)
        .ok()
        .and_then(|r| r.familiar_name())
        .unwrap_or_else(|| full.to_string())
}

/// The names an `index.json` entry answers to: normalized forms of `io.containerd.image.name` and of
/// `org.opencontainers.image.ref.name` (when that parses as a reference), plus the raw `ref.name`.
pub fn entry_names(image_name: Option<&str>, ref_name: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    for n in [image_name, ref_name].into_iter().flatten() {
        if let Some(full) = Reference::parse(n).ok().and_then(|r| r.full_name()) {
            if !out.contains(&full) {
                out.push(full);
            }
        }
    }
    out
}

/// Whether `reference` (as typed, and parsed) names an entry with these annotations and digest.
pub fn matches(
    typed: &str,
    reference: &Reference,
    image_name: Option<&str>,
    ref_name: Option<&str>,
    digest: &Digest,
) -> bool {
    if let Some(d) = &reference.digest {
        if d != digest {
            return false;
        }
        let Some(repo) = &reference.repository else {
            return true;
        };
        // name@digest: the entry's repository must agree when the entry is named.
        let names = entry_names(image_name, ref_name);
        return names.is_empty()
            || names
                .iter()
                .any(|n| n.rsplit_once(':').is_some_and(|(r, _)| r == repo));
    }
    if ref_name == Some(typed) {
        return true;
    }
    let Some(full) = reference.full_name() else {
        return false;
    };
    entry_names(image_name, ref_name).contains(&full)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(s: &str) -> String {
        Reference::parse(s).unwrap().full_name().unwrap()
    }

    #[test]
    fn normalizes_like_docker() {
        assert_eq!(full("alpine"), "docker.io/library/alpine:latest");
        assert_eq!(full("alpine:3.20"), "docker.io/library/alpine:3.20");
        assert_eq!(full("user/app"), "docker.io/user/app:latest");
        assert_eq!(
            full("docker.io/library/alpine:3.20"),
            "docker.io/library/alpine:3.20"
        );
        assert_eq!(
            full("index.docker.io/library/alpine"),
            "docker.io/library/alpine:latest"
        );
        assert_eq!(
            full("registry.example.com/team/web:1.0"),
            "registry.example.com/team/web:1.0"
        );
        assert_eq!(full("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(full("localhost/app:2"), "localhost/app:2");
    }

    #[test]
    fn familiar_forms() {
        let f = |s: &str| Reference::parse(s).unwrap().familiar_name().unwrap();
        assert_eq!(f("docker.io/library/alpine:3.20"), "alpine:3.20");
        assert_eq!(f("docker.io/user/app:1"), "user/app:1");
        assert_eq!(f("registry:5000/a:b"), "registry:5000/a:b");
    }

    #[test]
    fn digests() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let r = Reference::parse(d).unwrap();
        assert!(r.repository.is_none() && r.tag.is_none());
        let r = Reference::parse(&format!("alpine@{d}")).unwrap();
        assert_eq!(r.repository.as_deref(), Some("docker.io/library/alpine"));
        assert!(r.tag.is_none());
        assert!(Reference::parse("alpine@sha256:abc").is_err());
    }

    #[test]
    fn rejects_invalid() {
        for bad in ["", "Alpine", "alpine:", "alpine:-x", "a//b", "-a", "a b"] {
            assert!(Reference::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn matches_either_annotation() {
        let d = Digest::sha256_of(b"x");
        let r = Reference::parse("alpine:3.20").unwrap();
        assert!(matches(
            "alpine:3.20",
            &r,
            Some("docker.io/library/alpine:3.20"),
            Some("3.20"),
            &d
        ));
        assert!(matches("alpine:3.20", &r, None, Some("alpine:3.20"), &d));
        assert!(!matches("alpine:3.20", &r, None, Some("3.20"), &d));
        let r = Reference::parse("img0").unwrap();
        assert!(matches("img0", &r, None, Some("img0"), &d));
        let r = Reference::parse("3.20").unwrap();
        assert!(
            matches("3.20", &r, None, Some("3.20"), &d),
            "raw ref.name match"
        );
        let by_digest = Reference::parse(&d.to_string()).unwrap();
        assert!(matches(&d.to_string(), &by_digest, None, None, &d));
    }
}
