//! Platforms as containerd writes and reads them: parse and normalize a specifier
//! (`os[(os.version)]/arch[/variant]`), format it, and match it exactly after normalization.

use std::fmt;

use serde_json::Value;

use super::error::{Error, Result};

/// A normalized platform. Equality is exact; [`Platform::matches`] also honours `os.version`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Platform {
    /// Operating system, normalized (`linux`, `windows`, `darwin`).
    pub os: String,
    /// Architecture, normalized (`amd64`, `arm64`, `arm`, `386`, …).
    pub architecture: String,
    /// Variant (`v7`; `None` for `arm64`'s default `v8` and for amd64's `v1`; arm64's `9.0` is `v9`).
    pub variant: Option<String>,
    /// Windows build (`10.0.20348.2031`), when the image states one.
    pub os_version: Option<String>,
}

impl Platform {
    /// Build a normalized platform from its parts.
    pub fn new(
        os: &str,
        architecture: &str,
        variant: Option<&str>,
        os_version: Option<&str>,
    ) -> Platform {
        let os = normalize_os(os);
        let (architecture, variant) = normalize_arch(architecture, variant.unwrap_or(""));
        Platform {
            os,
            architecture,
            variant: (!variant.is_empty()).then_some(variant),
            os_version: os_version.filter(|v| !v.is_empty()).map(str::to_string),
        }
    }

    /// The platform of the running machine.
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Platform::new(std::env::consts::OS, arch, None, None)
    }

    /// Parse a specifier as containerd does: `os/arch[/variant]`, `os(version)/arch`, or one part (an OS
    /// takes the host's architecture, an architecture the host's OS).
    ///
    /// # Errors
    /// [`Error::InvalidPlatform`] naming the specifier: empty parts, more than three parts, `*`, or
    /// characters outside `[A-Za-z0-9_.-]`.
    pub fn parse(spec: &str) -> Result<Platform> {
        let bad = |reason: &str| Error::InvalidPlatform {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        let s = spec.trim();
        if s.is_empty() {
            return Err(bad("empty specifier"));
        }
        let parts: Vec<&str> = s.split('/').collect();
        if parts.len() > 3 {
            return Err(bad("too many parts (expected os/arch[/variant])"));
        }
        let (head, rest) = parts.split_first().ok_or_else(|| bad("empty specifier"))?;
        let (first, version) = match head.split_once('(') {
            Some((os, rest)) => {
                let v = rest
                    .strip_suffix(')')
                    .ok_or_else(|| bad("unclosed '(' in os version"))?;
                check_part(v, "os version").map_err(|r| bad(&r))?;
                (os, Some(v))
            }
            None => (*head, None),
        };
        check_part(first, "os").map_err(|r| bad(&r))?;
        for p in rest {
            check_part(p, "part").map_err(|r| bad(&r))?;
        }
        let host = Platform::host();
        match parts.len() {
            1 => {
                if version.is_some() || is_known_os(first) {
                    Ok(Platform::new(
                        first,
                        &host.architecture,
                        host.variant.as_deref(),
                        version,
                    ))
                } else if is_known_arch(first) {
                    Ok(Platform::new(&host.os, first, None, None))
                } else {
                    Err(bad("unknown operating system or architecture"))
                }
            }
            _ => match rest {
                [arch] => Ok(Platform::new(first, arch, None, version)),
                [arch, variant] => Ok(Platform::new(first, arch, Some(variant), version)),
                _ => Err(bad("too many parts (expected os/arch[/variant])")),
            },
        }
    }

    /// Parse a list of specifiers where each entry may itself be comma-separated; duplicates after
    /// normalization count once. An empty list means "every platform".
    ///
    /// # Errors
    /// [`Error::InvalidPlatform`] for the first entry that does not parse.
    pub fn parse_list<S: AsRef<str>>(specs: &[S]) -> Result<Vec<Platform>> {
        let mut out: Vec<Platform> = Vec::new();
        for entry in specs {
            let entry = entry.as_ref();
            if entry.trim().is_empty() {
                return Err(Error::InvalidPlatform {
                    spec: entry.to_string(),
                    reason: "empty specifier".into(),
                });
            }
            for spec in entry.split(',') {
                let p = Platform::parse(spec)?;
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
        Ok(out)
    }

    /// Read a descriptor's or config's platform fields (`os`, `architecture`, `variant`, `os.version`).
    /// `None` when `os` or `architecture` is missing or not a string.
    pub fn from_json(v: &Value) -> Option<Platform> {
        let os = v.get("os")?.as_str()?;
        let arch = v.get("architecture")?.as_str()?;
        if os.is_empty() || arch.is_empty() {
            return None;
        }
        let variant = v.get("variant").and_then(Value::as_str);
        let version = v.get("os.version").and_then(Value::as_str);
        Some(Platform::new(os, arch, variant, version))
    }

    /// The platform as descriptor JSON (`os`, `architecture`, `variant`, `os.version`).
    pub fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        m.insert(
            "architecture".into(),
            Value::String(self.architecture.clone()),
        );
        m.insert("os".into(), Value::String(self.os.clone()));
        if let Some(v) = &self.variant {
            m.insert("variant".into(), Value::String(v.clone()));
        }
        if let Some(v) = &self.os_version {
            m.insert("os.version".into(), Value::String(v.clone()));
        }
        Value::Object(m)
    }

    /// `unknown/unknown`: the platform buildkit gives attestation manifests. Never a real platform.
    pub fn is_unknown(&self) -> bool {
        self.os == "unknown" || self.architecture == "unknown"
    }

    /// Whether `self` (a wanted platform) selects `other` (an image's platform): equal OS, architecture
    /// and variant after normalization; `os.version` compared on major.minor.build only when both have one.
    pub fn matches(&self, other: &Platform) -> bool {
        if self.os != other.os
            || self.architecture != other.architecture
            || self.variant != other.variant
        {
            return false;
        }
        match (&self.os_version, &other.os_version) {
            (Some(a), Some(b)) => build_prefix(a) == build_prefix(b),
            _ => true,
        }
    }
}

fn build_prefix(v: &str) -> Vec<&str> {
    v.split('.').take(3).collect()
}

impl fmt::Display for Platform {
    /// containerd's format: `os[(os.version)]/arch[/variant]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.os)?;
        if let Some(v) = &self.os_version {
            write!(f, "({v})")?;
        }
        write!(f, "/{}", self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// The platforms wanted by an operation: `None` selects everything; a list is a requirement.
#[derive(Clone, Debug, Default)]
pub struct Matcher {
    wanted: Option<Vec<Platform>>,
}

impl Matcher {
    /// Select every platform.
    pub fn all() -> Matcher {
        Matcher { wanted: None }
    }

    /// Select exactly `wanted`; an empty list selects every platform.
    pub fn only(wanted: Vec<Platform>) -> Matcher {
        Matcher {
            wanted: (!wanted.is_empty()).then_some(wanted),
        }
    }

    /// The required platforms, if any.
    pub fn wanted(&self) -> Option<&[Platform]> {
        self.wanted.as_deref()
    }

    /// Whether a manifest with platform `p` is selected (`None`: descriptors without a platform are kept).
    pub fn selects(&self, p: Option<&Platform>) -> bool {
        match (&self.wanted, p) {
            (None, _) | (_, None) => true,
            (Some(w), Some(p)) => w.iter().any(|want| want.matches(p)),
        }
    }
}

fn check_part(p: &str, what: &str) -> std::result::Result<(), String> {
    if p.is_empty() {
        return Err(format!("empty {what}"));
    }
    if let Some(c) = p
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!("character {c:?} not allowed in {what} {p:?}"));
    }
    Ok(())
}

fn normalize_os(os: &str) -> String {
    let os = os.to_ascii_lowercase();
    match os.as_str() {
        "macos" => "darwin".into(),
        _ => os,
    }
}

fn normalize_arch(arch: &str, variant: &str) -> (String, String) {
    let arch = arch.to_ascii_lowercase();
    let variant = variant.to_ascii_lowercase();
    match arch.as_str() {
        "i386" => ("386".into(), String::new()),
        "x86_64" | "x86-64" | "amd64" => {
            let v = if variant == "v1" {
                String::new()
            } else {
                variant
            };
            ("amd64".into(), v)
        }
        "aarch64" | "arm64" => {
            let v = match variant.as_str() {
                "8" | "v8" | "v8.0" => String::new(),
                "9" | "9.0" | "v9.0" => "v9".into(),
                _ => variant,
            };
            ("arm64".into(), v)
        }
        "armhf" => ("arm".into(), "v7".into()),
        "armel" => ("arm".into(), "v6".into()),
        "arm" => {
            let v = match variant.as_str() {
                "" | "7" => "v7".into(),
                "5" | "6" | "8" => format!("v{variant}"),
                _ => variant,
            };
            ("arm".into(), v)
        }
        _ => (arch, variant),
    }
}

const KNOWN_OS: &[&str] = &[
    "aix",
    "android",
    "darwin",
    "macos",
    "dragonfly",
    "freebsd",
    "hurd",
    "illumos",
    "ios",
    "js",
    "linux",
    "nacl",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "wasip1",
    "windows",
    "zos",
];

const KNOWN_ARCH: &[&str] = &[
    "386",
    "amd64",
    "amd64p32",
    "arm",
    "armbe",
    "arm64",
    "arm64be",
    "ppc64",
    "ppc64le",
    "loong64",
    "mips",
    "mipsle",
    "mips64",
    "mips64le",
    "mips64p32",
    "mips64p32le",
    "ppc",
    "riscv",
    "riscv64",
    "s390",
    "s390x",
    "sparc",
    "sparc64",
    "wasm",
    "aarch64",
    "armhf",
    "armel",
    "x86_64",
    "x86-64",
    "i386",
];

fn is_known_os(s: &str) -> bool {
    KNOWN_OS.contains(&s.to_ascii_lowercase().as_str())
}

fn is_known_arch(s: &str) -> bool {
    KNOWN_ARCH.contains(&s.to_ascii_lowercase().as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> String {
        Platform::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalizes_every_alias() {
        assert_eq!(p("linux/amd64"), "linux/amd64");
        assert_eq!(p("Linux/X86_64"), "linux/amd64");
        assert_eq!(p("linux/x86-64"), "linux/amd64");
        assert_eq!(p("linux/amd64/v1"), "linux/amd64");
        assert_eq!(p("linux/amd64/v3"), "linux/amd64/v3");
        assert_eq!(p("linux/aarch64"), "linux/arm64");
        assert_eq!(p("linux/arm64/v8"), "linux/arm64");
        assert_eq!(p("linux/arm64/9.0"), "linux/arm64/v9");
        assert_eq!(p("linux/arm64/v8.2"), "linux/arm64/v8.2");
        assert_eq!(p("linux/armhf"), "linux/arm/v7");
        assert_eq!(p("linux/armel"), "linux/arm/v6");
        assert_eq!(p("linux/arm"), "linux/arm/v7");
        assert_eq!(p("linux/arm/v6"), "linux/arm/v6");
        assert_eq!(p("linux/i386"), "linux/386");
        assert_eq!(p("macos/arm64"), "darwin/arm64");
        assert_eq!(p("windows(10.0.20348)/amd64"), "windows(10.0.20348)/amd64");
    }

    #[test]
    fn one_part_forms_take_the_host() {
        let host = Platform::host();
        assert_eq!(
            Platform::parse("linux").unwrap().architecture,
            host.architecture
        );
        assert_eq!(Platform::parse("arm64").unwrap().os, host.os);
        assert_eq!(Platform::parse("arm64").unwrap().architecture, "arm64");
    }

    #[test]
    fn rejects_bad_specifiers() {
        for bad in [
            "",
            "linux/",
            "/amd64",
            "linux//v7",
            "linux/arm/v7/x",
            "*",
            "linux/*",
            "linux/am d64",
            "linux/amd64;",
            "nonsense",
            "windows(10.0/amd64",
        ] {
            let e = Platform::parse(bad).unwrap_err();
            assert!(matches!(e, Error::InvalidPlatform { .. }), "{bad:?}: {e}");
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn matches_exactly_after_normalization() {
        let want = Platform::parse("linux/arm64").unwrap();
        assert!(want.matches(&Platform::new("linux", "arm64", Some("v8"), None)));
        assert!(!want.matches(&Platform::new("linux", "arm", Some("v7"), None)));
        let v7 = Platform::parse("linux/arm/v7").unwrap();
        assert!(
            !v7.matches(&Platform::parse("linux/arm/v6").unwrap()),
            "no fallback to older variants"
        );
        let win = Platform::parse("windows/amd64").unwrap();
        let ltsc = Platform::parse("windows(10.0.20348.2113)/amd64").unwrap();
        assert!(win.matches(&ltsc));
        assert!(Platform::parse("windows(10.0.20348)/amd64")
            .unwrap()
            .matches(&ltsc));
        assert!(!Platform::parse("windows(10.0.17763)/amd64")
            .unwrap()
            .matches(&ltsc));
    }

    #[test]
    fn list_splits_commas_and_dedups() {
        let l =
            Platform::parse_list(&["linux/amd64,linux/arm64", "linux/x86_64", "linux/arm64/v8"])
                .unwrap();
        let s: Vec<String> = l.iter().map(ToString::to_string).collect();
        assert_eq!(s, ["linux/amd64", "linux/arm64"]);
        assert!(Platform::parse_list(&["linux/amd64,"]).is_err());
    }

    #[test]
    fn matcher_keeps_platformless_descriptors() {
        let m = Matcher::only(vec![Platform::parse("linux/amd64").unwrap()]);
        assert!(m.selects(None));
        assert!(!m.selects(Some(&Platform::parse("linux/arm64").unwrap())));
        assert!(Matcher::all().selects(Some(&Platform::parse("linux/arm64").unwrap())));
    }
}
