//! Resolution with PubGrub: versions and specifiers by PEP 440, markers by
//! PEP 508 evaluated for the sandbox, extras as their own packages (the
//! usual PubGrub encoding). A conflict is explained in words.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use anyhow::{Result, anyhow};
use pep440_rs::{Operator, Version, VersionSpecifier, VersionSpecifiers};
use pep508_rs::{ExtraName, MarkerEnvironment, Requirement, VersionOrUrl};
use pubgrub::{
    DefaultStringReporter, Dependencies, DependencyProvider, PackageResolutionStatistics,
    PubGrubError, Ranges, Reporter,
};

use crate::dist::{Kind, normalize};
use crate::environment;
use crate::lock::Locked;
use crate::requirements::Wanted;
use crate::sources::{Candidate, Metadata, Sources};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pkg {
    Root,
    Dist(String),
    /// `name[extra]`: the extra's dependencies, at the same version as `name`.
    Extra(String, String),
}

impl fmt::Display for Pkg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pkg::Root => write!(f, "the worker's requirements"),
            Pkg::Dist(name) => write!(f, "{name}"),
            Pkg::Extra(name, extra) => write!(f, "{name}[{extra}]"),
        }
    }
}

/// Resolve `wanted` against `sources`: the chosen file of every package.
pub fn resolve(wanted: &Wanted, sources: &Sources) -> Result<Vec<Locked>> {
    let provider = Provider {
        wanted,
        sources,
        markers: environment::markers(),
        chosen: RefCell::default(),
    };
    let solution = match pubgrub::resolve(&provider, Pkg::Root, Version::new([0u64])) {
        Ok(solution) => solution,
        Err(PubGrubError::NoSolution(mut tree)) => {
            tree.collapse_no_versions();
            return Err(anyhow!(
                "the requirements cannot be installed together:\n{}\nhint: loosen a version constraint, or add --find-links / --index-url where the missing versions are",
                DefaultStringReporter::report(&tree)
            ));
        }
        Err(PubGrubError::ErrorChoosingVersion { source, .. })
        | Err(PubGrubError::ErrorRetrievingDependencies { source, .. }) => {
            return Err(anyhow!("{}", source.0));
        }
        Err(e) => return Err(anyhow!("resolving the requirements failed: {e}")),
    };
    let chosen = provider.chosen.borrow();
    let mut locked = Vec::new();
    for (package, version) in solution {
        let Pkg::Dist(name) = package else { continue };
        let candidate = chosen
            .get(&(name.clone(), version.clone()))
            .ok_or_else(|| anyhow!("internal: no file chosen for {name} {version}"))?;
        let (_, sha256) = sources.fetch(candidate)?;
        locked.push(Locked {
            name,
            version: version.to_string(),
            filename: candidate.file.filename.clone(),
            sha256,
        });
    }
    Ok(locked)
}

#[derive(Debug)]
pub struct ProviderError(pub String);

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProviderError {}

struct Provider<'a> {
    wanted: &'a Wanted,
    sources: &'a Sources,
    markers: MarkerEnvironment,
    /// The file picked for each (name, version), and its metadata.
    chosen: RefCell<HashMap<(String, Version), Candidate>>,
}

type Deps = Dependencies<Pkg, Ranges<Version>, String>;

impl Provider<'_> {
    fn err(message: impl Into<String>) -> ProviderError {
        ProviderError(message.into())
    }

    /// The best file of each version of `name` the sandbox can use.
    fn usable(&self, name: &str) -> Result<HashMap<Version, Candidate>, ProviderError> {
        let all = self
            .sources
            .candidates(name)
            .map_err(|e| Self::err(format!("{e:#}")))?;
        let mut best: HashMap<Version, Candidate> = HashMap::new();
        for c in all.iter().filter(|c| c.file.kind != Kind::NativeWheel) {
            if c.requires_python
                .as_deref()
                .is_some_and(|r| !python_fits(r))
            {
                continue;
            }
            let better = best
                .get(&c.file.version)
                .is_none_or(|b| c.file.preference() < b.file.preference());
            if better {
                best.insert(c.file.version.clone(), c.clone());
            }
        }
        if best.is_empty() && !all.is_empty() {
            let example = &all[0].file.filename;
            return Err(Self::err(format!(
                "{name} cannot be installed: it publishes only native wheels (such as {example}) and no pure-Python wheel, source distribution or WASI build; it needs native code, and Taipan ships WASI builds only of: {}\nhint: use a pure-Python alternative, or write a recipe for it (recipes/README.md), build it with `taipan wheels build` and pass the wheel's folder with --find-links",
                crate::shipped::packages().join(", ")
            )));
        }
        Ok(best)
    }

    fn metadata(&self, name: &str, version: &Version) -> Result<Metadata, ProviderError> {
        let candidate = self
            .usable(name)?
            .remove(version)
            .ok_or_else(|| Self::err(format!("internal: {name} {version} vanished")))?;
        let meta = self.sources.metadata(&candidate).map_err(|e| {
            Self::err(format!(
                "reading the metadata of {}: {e:#}",
                candidate.file.filename
            ))
        })?;
        self.chosen
            .borrow_mut()
            .insert((name.to_string(), version.clone()), candidate);
        Ok(meta)
    }

    fn add(&self, deps: &mut HashMap<Pkg, Ranges<Version>>, requirement: &Requirement) {
        let name = normalize(requirement.name.as_ref());
        if environment::is_provided(&name) {
            return;
        }
        let range = match &requirement.version_or_url {
            Some(VersionOrUrl::VersionSpecifier(specs)) => specifiers_range(specs),
            _ => Ranges::full(),
        };
        for extra in &requirement.extras {
            let key = Pkg::Extra(name.clone(), extra.to_string());
            let merged = deps
                .remove(&key)
                .map_or(range.clone(), |r| r.intersection(&range));
            deps.insert(key, merged);
        }
        let key = Pkg::Dist(name);
        let merged = deps
            .remove(&key)
            .map_or(range.clone(), |r| r.intersection(&range));
        deps.insert(key, merged);
    }
}

impl DependencyProvider for Provider<'_> {
    type P = Pkg;
    type V = Version;
    type VS = Ranges<Version>;
    type M = String;
    type Priority = (u32, std::cmp::Reverse<usize>);
    type Err = ProviderError;

    fn prioritize(
        &self,
        package: &Pkg,
        range: &Ranges<Version>,
        stats: &PackageResolutionStatistics,
    ) -> Self::Priority {
        // Conflicting packages first, then the most constrained.
        let versions = match package {
            Pkg::Dist(name) | Pkg::Extra(name, _) => self
                .usable(name)
                .map(|u| u.keys().filter(|v| range.contains(v)).count())
                .unwrap_or(0),
            Pkg::Root => 1,
        };
        (stats.conflict_count(), std::cmp::Reverse(versions))
    }

    fn choose_version(
        &self,
        package: &Pkg,
        range: &Ranges<Version>,
    ) -> Result<Option<Version>, ProviderError> {
        let name = match package {
            Pkg::Root => return Ok(Some(Version::new([0u64]))),
            Pkg::Dist(name) | Pkg::Extra(name, _) => name,
        };
        let usable = self.usable(name)?;
        let mut versions: Vec<&Version> = usable.keys().filter(|v| range.contains(v)).collect();
        versions.sort();
        // Stable releases first; a pre-release only when nothing else fits.
        let stable = versions.iter().rev().find(|v| !v.any_prerelease());
        Ok(stable.or(versions.last()).map(|v| (*v).clone()))
    }

    fn get_dependencies(&self, package: &Pkg, version: &Version) -> Result<Deps, ProviderError> {
        let mut deps: HashMap<Pkg, Ranges<Version>> = HashMap::new();
        match package {
            Pkg::Root => {
                for requirement in &self.wanted.requirements {
                    if requirement.evaluate_markers(&self.markers, &[]) {
                        self.add(&mut deps, requirement);
                    }
                }
            }
            Pkg::Dist(name) => {
                let meta = self.metadata(name, version)?;
                if let Some(requires) = &meta.requires_python
                    && !python_fits(requires)
                {
                    return Ok(Dependencies::Unavailable(format!(
                        "requires Python {requires}"
                    )));
                }
                for text in &meta.requires_dist {
                    let Ok(requirement) = Requirement::from_str(text) else {
                        continue;
                    };
                    if requirement.evaluate_markers(&self.markers, &[]) {
                        self.add(&mut deps, &requirement);
                    }
                }
            }
            Pkg::Extra(name, extra) => {
                deps.insert(Pkg::Dist(name.clone()), Ranges::singleton(version.clone()));
                let meta = self.metadata(name, version)?;
                let Ok(extra_name) = ExtraName::from_str(extra) else {
                    return Ok(Dependencies::Available(deps.into_iter().collect()));
                };
                for text in &meta.requires_dist {
                    let Ok(requirement) = Requirement::from_str(text) else {
                        continue;
                    };
                    let with = requirement
                        .evaluate_markers(&self.markers, std::slice::from_ref(&extra_name));
                    let without = requirement.evaluate_markers(&self.markers, &[]);
                    if with && !without {
                        self.add(&mut deps, &requirement);
                    }
                }
            }
        }
        Ok(Dependencies::Available(deps.into_iter().collect()))
    }
}

fn python_fits(requires: &str) -> bool {
    let python = Version::from_str(environment::PYTHON_FULL_VERSION).expect("valid");
    VersionSpecifiers::from_str(requires).map_or(true, |s| s.contains(&python))
}

/// PEP 440 specifiers as a PubGrub range.
pub fn specifiers_range(specifiers: &VersionSpecifiers) -> Ranges<Version> {
    specifiers.iter().fold(Ranges::full(), |range, s| {
        range.intersection(&specifier_range(s))
    })
}

fn specifier_range(specifier: &VersionSpecifier) -> Ranges<Version> {
    let v = specifier.version().clone();
    match specifier.operator() {
        Operator::Equal | Operator::ExactEqual => Ranges::singleton(v),
        Operator::NotEqual => Ranges::singleton(v).complement(),
        Operator::EqualStar => prefix_range(&v),
        Operator::NotEqualStar => prefix_range(&v).complement(),
        Operator::TildeEqual => {
            let release = v.release();
            let keep = release.len().saturating_sub(1).max(1);
            let prefix = Version::new(release[..keep].iter().copied());
            Ranges::higher_than(v).intersection(&prefix_range(&prefix))
        }
        Operator::LessThan => {
            // `<1.0` excludes 1.0's pre-releases, unless it names one.
            if v.any_prerelease() {
                Ranges::strictly_lower_than(v)
            } else {
                Ranges::strictly_lower_than(v.with_min(Some(0)))
            }
        }
        Operator::LessThanEqual => Ranges::lower_than(v),
        Operator::GreaterThan => {
            // `>1.0` excludes 1.0's post-releases, unless it names one.
            if v.is_post() {
                Ranges::strictly_higher_than(v)
            } else {
                Ranges::strictly_higher_than(v.with_max(Some(0)))
            }
        }
        Operator::GreaterThanEqual => Ranges::higher_than(v),
    }
}

/// Every version starting with `prefix`'s release (`==1.2.*`).
fn prefix_range(prefix: &Version) -> Ranges<Version> {
    let release = prefix.release();
    let low = Version::new(release.iter().copied())
        .with_epoch(prefix.epoch())
        .with_min(Some(0));
    let mut next = release.to_vec();
    if let Some(last) = next.last_mut() {
        *last += 1;
    }
    let high = Version::new(next)
        .with_epoch(prefix.epoch())
        .with_min(Some(0));
    Ranges::between(low, high)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(s: &str) -> Ranges<Version> {
        specifiers_range(&VersionSpecifiers::from_str(s).unwrap())
    }

    fn v(s: &str) -> Version {
        Version::from_str(s).unwrap()
    }

    #[test]
    fn specifiers_as_ranges() {
        assert!(range(">=2.5,<4").contains(&v("3.10")));
        assert!(!range(">=2.5,<4").contains(&v("4.0")));
        assert!(!range("<4").contains(&v("4.0rc1")));
        assert!(range("==1.2.*").contains(&v("1.2.9")));
        assert!(!range("==1.2.*").contains(&v("1.3")));
        assert!(range("~=1.4.5").contains(&v("1.4.9")));
        assert!(!range("~=1.4.5").contains(&v("1.5")));
        assert!(range("~=2.2").contains(&v("2.9")));
        assert!(!range("~=2.2").contains(&v("3.0")));
        assert!(!range("!=1.0").contains(&v("1.0")));
        assert!(!range(">1.0").contains(&v("1.0.post1")));
        assert!(range(">1.0").contains(&v("1.0.1")));
    }
}
