//! The results table: one row per figure, ferry's value beside the peer's and the ratio,
//! with the target (if it has one) judged honestly.

use std::fmt::Write as _;

/// Which way a figure is better, so the table can say so.
#[derive(Clone, Copy, PartialEq)]
pub enum Better {
    Higher,
    Lower,
}

pub struct Row {
    pub scenario: &'static str,
    pub metric: String,
    pub unit: &'static str,
    pub better: Better,
    pub ferry: Option<f64>,
    pub peer_name: &'static str,
    pub peer: Option<f64>,
    /// Minimum ferry/peer ratio the issue asks for (for `Better::Higher` figures).
    pub target: Option<f64>,
    pub bound: Option<f64>,
    /// An absolute bound on ferry's figure, in the row's unit (met while ferry <= it).
    pub at_most: Option<f64>,
    pub note: String,
}

impl Row {
    pub fn new(
        scenario: &'static str,
        metric: impl Into<String>,
        unit: &'static str,
        better: Better,
    ) -> Row {
        Row {
            scenario,
            metric: metric.into(),
            unit,
            better,
            ferry: None,
            peer_name: "",
            peer: None,
            target: None,
            bound: None,
            at_most: None,
            note: String::new(),
        }
    }

    pub fn ferry(mut self, v: f64) -> Row {
        self.ferry = Some(v);
        self
    }

    pub fn peer(mut self, name: &'static str, v: Option<f64>) -> Row {
        self.peer_name = name;
        self.peer = v;
        self
    }

    pub fn target(mut self, min_ratio: f64) -> Row {
        self.target = Some(min_ratio);
        self
    }

    /// A bound rather than a goal: met while ferry / peer stays at or under `max_ratio`.
    pub fn bound(mut self, max_ratio: f64) -> Row {
        self.bound = Some(max_ratio);
        self
    }

    /// A bound on ferry's own figure (not a ratio): met while ferry stays at or under `max`.
    pub fn at_most(mut self, max: f64) -> Row {
        self.at_most = Some(max);
        self
    }

    pub fn note(mut self, n: impl Into<String>) -> Row {
        self.note = n.into();
        self
    }

    fn ratio(&self) -> Option<f64> {
        match (self.ferry, self.peer) {
            (Some(f), Some(p)) if p > 0.0 => Some(f / p),
            _ => None,
        }
    }
}

fn num(v: Option<f64>, unit: &str) -> String {
    match v {
        None => "-".to_string(),
        Some(v) if unit == "x" => format!("{v:.2}"),
        Some(v) if v >= 100.0 => format!("{:.0}", v),
        Some(v) if v >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

/// Renders the rows as a Markdown table; notes follow it as numbered footnotes.
pub fn table(rows: &[Row]) -> String {
    let mut s = String::new();
    let mut notes = Vec::new();
    let _ = writeln!(
        s,
        "| scenario | figure | unit | ferry | peer | peer figure | ferry / peer | target |"
    );
    let _ = writeln!(s, "|---|---|---|---:|---|---:|---:|---|");
    for r in rows {
        let ratio = r.ratio();
        let arrow = match r.better {
            Better::Higher => "↑",
            Better::Lower => "↓",
        };
        let ratio_text = match ratio {
            Some(x) => format!("{x:.2}x"),
            None => "-".to_string(),
        };
        let target = match (r.at_most, r.ferry) {
            (Some(m), Some(f)) if f <= m => {
                format!("<= {} {}: **met**", num(Some(m), r.unit), r.unit)
            }
            (Some(m), Some(_)) => format!("<= {} {}: **NOT met**", num(Some(m), r.unit), r.unit),
            (Some(m), None) => format!("<= {} {}: not measured", num(Some(m), r.unit), r.unit),
            (None, _) => match (r.target, ratio) {
                (Some(t), Some(x)) if x >= t => format!(">= {t:.2}x: **met**"),
                (Some(t), Some(_)) => format!(">= {t:.2}x: **NOT met**"),
                (Some(t), None) => format!(">= {t:.2}x: not measured"),
                (None, _) => match (r.bound, ratio) {
                    (Some(b), Some(x)) if x <= b => format!("<= {b:.2}x: **met**"),
                    (Some(b), Some(_)) => format!("<= {b:.2}x: **NOT met**"),
                    (Some(b), None) => format!("<= {b:.2}x: not measured"),
                    (None, _) => String::new(),
                },
            },
        };
        let mut metric = format!("{} {arrow}", r.metric);
        if !r.note.is_empty() {
            notes.push(r.note.clone());
            let _ = write!(metric, " [{}]", notes.len());
        }
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.scenario,
            metric,
            r.unit,
            num(r.ferry, r.unit),
            if r.peer_name.is_empty() {
                "-"
            } else {
                r.peer_name
            },
            num(r.peer, r.unit),
            ratio_text,
            target
        );
    }
    let _ = writeln!(s, "\n↑ higher is better, ↓ lower is better.\n");
    for (i, n) in notes.iter().enumerate() {
        let _ = writeln!(s, "[{}] {n}  ", i + 1);
    }
    s
}
