//! What is wrong with a configuration, said so an operator can find and fix it.
//!
//! Validation never stops at the first mistake: every stage appends [`Problem`]s, each naming
//! the file and the JSON path of the value at fault, so one `gru config validate` run shows
//! everything to fix. Paths are built with [`JsonPath`] so they are spelled the same way
//! everywhere: dots between fields, `"quoted"` keys for entries of user maps (whose keys are
//! data, not schema), `[i]` for array elements.

use std::fmt;

/// One thing wrong with one value of one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The document's path in the configuration layout, e.g. `services/web.json`.
    pub file: String,
    /// Where in the document, e.g. `Configuration.Ports."80"`; empty for the whole document.
    pub path: String,
    /// What is wrong, lowercase, naming the offending value.
    pub message: String,
    /// How to fix it, when there is something better to say than the message.
    pub hint: Option<String>,
}

impl Problem {
    pub fn new(
        file: impl Into<String>,
        path: impl fmt::Display,
        message: impl Into<String>,
    ) -> Problem {
        Problem {
            file: file.into(),
            path: path.to_string(),
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: Option<String>) -> Problem {
        self.hint = hint;
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.file)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        write!(f, "{}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

/// Orders problems by file, then path, keeping the order of problems at the same place.
pub(crate) fn sort_problems(problems: &mut [Problem]) {
    problems.sort_by(|a, b| (&a.file, &a.path).cmp(&(&b.file, &b.path)));
}

/// One step of a [`JsonPath`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// A schema field, written with its canonical name.
    Field(String),
    /// An entry of a user map (`Env`, `Ports`, `Constraints`), whose key is data.
    Key(String),
    /// An element of an array.
    Index(usize),
}

/// The location of a value inside a document, rendered as `Configuration.Ports."80"`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct JsonPath {
    segments: Vec<Segment>,
}

impl JsonPath {
    pub(crate) fn root() -> JsonPath {
        JsonPath::default()
    }

    /// A path of schema fields written with dots, e.g. `"Autonomic.LoopTimeInterval"`.
    pub(crate) fn fields(dotted: &str) -> JsonPath {
        JsonPath {
            segments: dotted
                .split('.')
                .map(|name| Segment::Field(name.to_owned()))
                .collect(),
        }
    }

    pub(crate) fn field(&self, name: &str) -> JsonPath {
        self.with(Segment::Field(name.to_owned()))
    }

    pub(crate) fn key(&self, key: &str) -> JsonPath {
        self.with(Segment::Key(key.to_owned()))
    }

    pub(crate) fn index(&self, index: usize) -> JsonPath {
        self.with(Segment::Index(index))
    }

    pub(crate) fn with(&self, segment: Segment) -> JsonPath {
        let mut segments = self.segments.clone();
        segments.push(segment);
        JsonPath { segments }
    }

    pub(crate) fn segments(&self) -> &[Segment] {
        &self.segments
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.segments.iter().enumerate() {
            let dot = if i == 0 { "" } else { "." };
            match segment {
                Segment::Field(name) => write!(f, "{dot}{name}")?,
                // A JSON string literal quotes the key and escapes anything odd inside it.
                Segment::Key(key) => write!(f, "{dot}{}", serde_json::Value::from(key.as_str()))?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// The problems of one document, gathered stage by stage before the file name is attached.
#[derive(Debug)]
pub(crate) struct Findings {
    file: String,
    problems: Vec<Problem>,
}

impl Findings {
    pub(crate) fn new(file: &str) -> Findings {
        Findings {
            file: file.to_owned(),
            problems: Vec::new(),
        }
    }

    pub(crate) fn add(&mut self, path: &JsonPath, message: impl Into<String>) {
        self.add_with_hint(path, message, None);
    }

    pub(crate) fn add_with_hint(
        &mut self,
        path: &JsonPath,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.problems
            .push(Problem::new(self.file.as_str(), path, message).with_hint(hint));
    }

    /// Reports `value` if it is below `min`: a zero interval or count would stall a loop.
    pub(crate) fn at_least(&mut self, path: &str, value: u64, min: u64) {
        if value < min {
            self.add(
                &JsonPath::fields(path),
                format!("must be at least {min}, found {value}"),
            );
        }
    }

    /// Reports an empty required string: `is required` covers both absent and `""`.
    pub(crate) fn required(&mut self, path: &str, value: &str) {
        if value.is_empty() {
            self.add(&JsonPath::fields(path), "is required");
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.problems.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }

    pub(crate) fn into_problems(self) -> Vec<Problem> {
        self.problems
    }

    /// Adds the problems of a later stage, except those at a path an earlier stage already
    /// flagged: a value that was rejected (and replaced by its default) must not be blamed
    /// twice, e.g. a `Name` of the wrong type also reported as missing.
    pub(crate) fn merge_later(&mut self, later: Findings) {
        let flagged: Vec<String> = self.problems.iter().map(|p| p.path.clone()).collect();
        self.problems.extend(
            later
                .problems
                .into_iter()
                .filter(|p| !flagged.contains(&p.path)),
        );
    }
}
