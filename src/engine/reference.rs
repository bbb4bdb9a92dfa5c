//! Image references, normalized as Docker does (`alpine` → `docker.io/library/alpine:latest`), their
//! familiar form for `RepoTags` (`alpine:3.20`), and the matching of a reference against the two name
//! annotations of a store's `index.json` entries.

use super::digest::Digest;
use super::error::{Error, Result};

pub use super::oci::{ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME};

const DEFAULT_DOMAIN: &str = "docker.io";
/// Longest repository name (with its registry), as Docker's reference grammar allows.
pub const MAX_NAME: usize = 255;
/// Longest tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
const MAX_TAG: usize = 128;
/// Longest text quoted whole in a message; a longer one is cut (a name may be 100,000 characters).
const QUOTE_MAX: usize = 80;

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

/// Docker's tag grammar: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn is_tag(t: &str) -> bool {
    t.len() <= MAX_TAG
        && t.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Docker's path component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn is_path_component(c: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let b = c.as_bytes();
    let mut i = 0;
    loop {
        let start = i;
        while b.get(i).copied().is_some_and(alnum) {
            i += 1;
        }
        if i == start {
            return false;
        }
        match b.get(i) {
            None => return true,
            Some(b'.') => i += 1,
            Some(b'_') => i += if b.get(i + 1) == Some(&b'_') { 2 } else { 1 },
            Some(b'-') => {
                while b.get(i) == Some(&b'-') {
                    i += 1;
                }
            }
            Some(_) => return false,
        }
    }
}

/// Docker's registry grammar: a host name of dot-separated labels (letters, digits, inner dashes), an
/// IPv4 address or a bracketed IPv6 address, with an optional numeric port.
fn is_domain(d: &str) -> bool {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        let Some((inner, after)) = rest.split_once(']') else {
            return false;
        };
        if inner.is_empty() || !inner.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return false;
        }
        match after {
            "" => return true,
            p => ("", p.strip_prefix(':').unwrap_or("x")),
        }
    } else {
        match d.rsplit_once(':') {
            Some((h, p)) => (h, p),
            None => (d, "0"),
        }
    };
    let label = |l: &str| {
        !l.is_empty()
            && l.starts_with(|c: char| c.is_ascii_alphanumeric())
            && l.ends_with(|c: char| c.is_ascii_alphanumeric())
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    !port.is_empty()
        && port.chars().all(|c| c.is_ascii_digit())
        && (d.starts_with('[') || host.split('.').all(label))
}

/// `s` quoted for a message, cut to its first [`QUOTE_MAX`] characters when longer.
fn quoted(s: &str) -> String {
    format!("{:?}", cut(s))
}

fn cut(s: &str) -> String {
    match s.char_indices().nth(QUOTE_MAX) {
        Some((i, _)) => format!(
            "{}… ({} characters)",
            s.get(..i).unwrap_or_default(),
            s.chars().count()
        ),
        None => s.to_string(),
    }
}

/// `name` split at its tag, which must be valid: the tag is after the last ':' that follows the last '/'
/// (a ':' before it is a registry port). The error is the reason.
fn split_tag(name: &str) -> std::result::Result<(&str, Option<&str>), String> {
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (repo, tag) = match name.get(last_slash..).and_then(|t| t.rfind(':')) {
        Some(i) => (
            name.get(..last_slash + i).unwrap_or_default(),
            Some(name.get(last_slash + i + 1..).unwrap_or_default()),
        ),
        None => (name, None),
    };
    match tag {
        Some(t) if !is_tag(t) => Err(format!("invalid tag {}", quoted(t))),
        _ => Ok((repo, tag)),
    }
}

/// The full repository name of `repo` (a name without tag or digest): registry checked or
/// `docker.io` added, `library/` added to a one-component Docker Hub name. The error is the reason.
fn repository(repo: &str) -> std::result::Result<String, String> {
    let mut comps: Vec<&str> = repo.split('/').collect();
    let domain = if comps.len() > 1
        && comps.first().is_some_and(|c| {
            c.contains('.')
                || c.contains(':')
                || *c == "localhost"
                || c.chars().any(|ch| ch.is_ascii_uppercase())
        }) {
        let d = comps.remove(0);
        if !is_domain(d) {
            return Err(format!("invalid registry {}", quoted(d)));
        }
        d
    } else {
        DEFAULT_DOMAIN
    };
    let domain = if domain == "index.docker.io" {
        DEFAULT_DOMAIN
    } else {
        domain
    };
    for c in &comps {
        if !is_path_component(c) {
            return Err(format!(
                "repository name component {} must be lowercase letters and digits, joined by '.', '_', '__' or dashes",
                quoted(c)
            ));
        }
    }
    if domain == DEFAULT_DOMAIN && comps.len() == 1 {
        comps.insert(0, "library");
    }
    let repository = format!("{domain}/{}", comps.join("/"));
    if repository.len() > MAX_NAME {
        return Err(format!(
            "the name is {} characters long, over Docker's limit of {MAX_NAME}",
            repository.len()
        ));
    }
    Ok(repository)
}

impl Reference {
    /// Parse and normalize a reference.
    ///
    /// # Errors
    /// [`Error::InvalidReference`] naming the string when it is not a valid reference.
    pub fn parse(s: &str) -> Result<Reference> {
        let bad = |reason: &str| Error::InvalidReference {
            reference: cut(s),
            reason: reason.to_string(),
        };
        if s.is_empty() {
            return Err(bad("empty reference"));
        }
        // Name, tag and digest together can be no longer than this; refuse longer text before reading it.
        if s.len() > MAX_NAME + 1 + MAX_TAG + 1 + 7 + 128 {
            return Err(bad(&format!(
                "{} characters is longer than any valid reference",
                s.len()
            )));
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
        let (repo, tag) = split_tag(name).map_err(|r| bad(&r))?;
        let repository = repository(repo).map_err(|r| bad(&r))?;
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

/// The names an `index.json` entry answers to: the normalized `io.containerd.image.name` when the entry
/// has one (it decides, as in containerd: a `ref.name` that says otherwise names nothing), else the
/// normalized `org.opencontainers.image.ref.name`. Names that do not parse are no names.
pub fn entry_names(image_name: Option<&str>, ref_name: Option<&str>) -> Vec<String> {
    image_name
        .or(ref_name)
        .and_then(|n| Reference::parse(n).ok())
        .and_then(|r| r.full_name())
        .into_iter()
        .collect()
}

/// Whether an entry's raw `ref.name` may be matched as typed (skopeo's `oci:DIR:REF`): always without an
/// image name; with one, only when it agrees with it (it is its tag, or the same full name).
fn ref_name_counts(image_name: Option<&str>, ref_name: &str) -> bool {
    image_name.is_none_or(|image| ref_name_agrees(image, ref_name))
}

/// Whether a `ref.name` agrees with the image name beside it: it is its tag, or the same full name.
pub fn ref_name_agrees(image_name: &str, ref_name: &str) -> bool {
    let Ok(image) = Reference::parse(image_name) else {
        return false;
    };
    image.tag.as_deref() == Some(ref_name)
        || Reference::parse(ref_name)
            .is_ok_and(|r| r.full_name().is_some() && r.full_name() == image.full_name())
}

/// The one name an archive's `index.json` entry is loaded under: its `io.containerd.image.name`, else its
/// `org.opencontainers.image.ref.name`; `None` for an unnamed entry. Both annotations, when present, must
/// be valid: the image name a reference with a tag, the ref name a reference or (beside an image name) a
/// tag.
///
/// # Errors
/// A reason naming the annotation and what is wrong with its value.
pub fn archive_name(
    image_name: Option<&str>,
    ref_name: Option<&str>,
) -> std::result::Result<Option<Reference>, String> {
    let parse = |key: &str, v: &str| {
        let r = Reference::parse(v).map_err(|e| format!("annotation {key}: {e}"))?;
        match r.full_name() {
            Some(_) => Ok(r),
            None => Err(format!("annotation {key}: {} has no tag", quoted(v))),
        }
    };
    let image = image_name
        .map(|v| parse(ANNOTATION_IMAGE_NAME, v))
        .transpose()?;
    let reference = match ref_name {
        Some(v) if image.is_some() && is_tag(v) => None,
        Some(v) => Some(parse(ANNOTATION_REF_NAME, v)?),
        None => None,
    };
    Ok(image.or(reference))
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
    if ref_name == Some(typed) && ref_name_counts(image_name, typed) {
        return true;
    }
    let Some(full) = reference.full_name() else {
        return false;
    };
    let in_repository = match (image_name.or(ref_name), &reference.repository) {
        (Some(raw), Some(repo)) => may_be_in(raw, repo),
        _ => true,
    };
    in_repository && entry_names(image_name, ref_name).contains(&full)
}

/// Whether a name annotation that reads `raw` may name an image of `repository` (a normalized one): every
/// spelling of a name holds the last path component of its repository as written, so a name without it
/// is not in it, and is not parsed to find out (a store of 50,000 names is matched in a few milliseconds).
pub fn may_be_in(raw: &str, repository: &str) -> bool {
    repository
        .rsplit('/')
        .next()
        .is_none_or(|last| raw.contains(last))
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
        let long = "a".repeat(100_000);
        let long_name = format!("{}:1", "a".repeat(250));
        for bad in [
            "",
            "Alpine",
            "alpine:",
            "alpine:-x",
            "alpine:.x",
            "a//b",
            "-a",
            "a b",
            "../x:1",
            "./x",
            "x/../y",
            "a..b",
            "a___b",
            "a_-b",
            "a.",
            "app:1\u{1b}]0;owned\u{7}",
            "app\n:1",
            ".:5000/x",
            "-reg.io/x",
            "reg.io:/x",
            "reg.io:5x/x",
            "[zz]/x",
            "reg.io/A-b",
            &long,
            &long_name,
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?}");
        }
        let e = Reference::parse(&long).unwrap_err().to_string();
        assert!(e.len() < 300, "{e}");
    }

    #[test]
    fn accepts_docker_grammar() {
        for good in [
            "a__b",
            "a--b",
            "a-b.c_d",
            "x:_tag",
            "[::1]:5000/x",
            "[::1]/x",
            "localhost:5000/x",
            "127.0.0.1:5000/team/x:1",
        ] {
            assert!(Reference::parse(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn image_name_decides_over_a_disagreeing_ref_name() {
        let d = Digest::sha256_of(b"x");
        let evil = Some("docker.io/library/evil:1");
        let r = Reference::parse("demo:1.0").unwrap();
        assert!(!matches("demo:1.0", &r, evil, Some("demo:1.0"), &d));
        assert!(!matches(
            "docker.io/library/demo:1.0",
            &Reference::parse("docker.io/library/demo:1.0").unwrap(),
            evil,
            Some("docker.io/library/demo:1.0"),
            &d
        ));
        // A ref.name that is the image's own tag still matches as typed.
        let one = Reference::parse("1").unwrap();
        assert!(matches("1", &one, evil, Some("1"), &d));
        assert_eq!(
            archive_name(Some("evil:1"), Some("docker.io/library/demo:1.0"))
                .unwrap()
                .and_then(|r| r.full_name()),
            Some("docker.io/library/evil:1".to_string())
        );
        assert!(archive_name(Some("app:1"), Some("Latest")).is_ok());
        assert!(archive_name(None, Some("Latest")).is_err());
        assert!(archive_name(Some("../x:1"), None).is_err());
        assert!(archive_name(None, Some("./x")).is_err());
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
