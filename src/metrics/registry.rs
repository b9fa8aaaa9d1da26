//! The registry: every metric family ferry exports, declared once with its name, help
//! text and type beside the function that reads its samples. Each component (the
//! broker, authentication, limits, the store's integrity, the upstreams, the process)
//! registers its families as a table; `/metrics` is a loop over the tables, so a family
//! is either declared here with its help or not exported at all, and the conventions
//! (a `_total` name for each counter and only for counters, names unique, help present)
//! are checked by a test over the tables rather than by reading a renderer.

use std::fmt::{Display, Write};

/// A Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One metric family of a component `T`.
pub struct Family<T> {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
    /// Writes the family's samples, reading them from `T`.
    pub samples: fn(&T, &mut Samples<'_>),
}

/// The sample lines of one family being written.
pub struct Samples<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl Samples<'_> {
    /// The family's one sample, without labels.
    pub fn value(&mut self, v: impl Display) {
        let _ = writeln!(self.out, "{} {v}", self.name);
    }

    /// A sample with `labels` (name, value), in that order.
    pub fn labeled(&mut self, labels: &[(&str, &str)], v: impl Display) {
        self.out.push_str(self.name);
        self.out.push('{');
        for (i, (k, val)) in labels.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            let _ = write!(self.out, "{k}=\"{val}\"");
        }
        let _ = writeln!(self.out, "}} {v}");
    }

    /// A sample of another series of the family (a histogram's `_bucket`, `_sum`,
    /// `_count`): `suffix` and `labels` as written.
    pub fn series(&mut self, suffix: &str, labels: &str, v: impl Display) {
        let _ = writeln!(self.out, "{}{suffix}{labels} {v}", self.name);
    }
}

/// Writes every family of `families` with `of`'s samples.
pub fn render<T>(families: &[Family<T>], of: &T, out: &mut String) {
    for f in families {
        let _ = writeln!(
            out,
            "# HELP {} {}\n# TYPE {} {}",
            f.name,
            f.help,
            f.name,
            f.kind.as_str()
        );
        let mut samples = Samples { out, name: f.name };
        (f.samples)(of, &mut samples);
    }
}

/// The names, types and help of `families`, for the conventions test.
#[cfg(test)]
pub fn described<T>(families: &[Family<T>]) -> Vec<(&'static str, Kind, &'static str)> {
    families.iter().map(|f| (f.name, f.kind, f.help)).collect()
}
