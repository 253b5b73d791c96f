//! A strict parser of Prometheus' text exposition format (0.0.4), for tests: every line must
//! be a well-formed comment or sample, every sample must belong to a family whose `# TYPE`
//! came first, no family is declared twice, no series appears twice, and histograms must be
//! cumulative and end with `+Inf` equal to `_count`.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: String,
    pub kind: String,
    pub help: String,
    pub samples: Vec<Sample>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Page {
    pub families: BTreeMap<String, Family>,
}

impl Page {
    pub fn family(&self, name: &str) -> &Family {
        self.families
            .get(name)
            .unwrap_or_else(|| panic!("no family {name}"))
    }

    /// The value of the sample `name` with exactly these labels, if present.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.families
            .values()
            .flat_map(|f| &f.samples)
            .find(|s| s.name == name && s.labels == wanted)
            .map(|s| s.value)
    }

    /// The sum of every sample named `name`, whatever its labels.
    pub fn sum(&self, name: &str) -> f64 {
        self.families
            .values()
            .flat_map(|f| &f.samples)
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .sum()
    }
}

fn is_name(name: &str, label: bool) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (!label && c == ':'));
    first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (!label && c == ':'))
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => text
            .parse::<f64>()
            .map_err(|_| format!("bad value {text:?}")),
    }
}

/// `{a="x",b="y"}` at the start of `text`: the labels and the rest of the text.
fn parse_labels(text: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = text.strip_prefix('{').ok_or("labels must start with {")?;
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or("label without =")?;
        let key = &rest[..eq];
        if !is_name(key, true) {
            return Err(format!("bad label name {key:?}"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("label value must be quoted")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value".into()),
            }
        };
        if labels.insert(key.to_owned(), value).is_some() {
            return Err(format!("label {key} repeated"));
        }
        rest = &rest[end + 1..];
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err("labels must be separated by ,".into());
        }
    }
}

/// Which declared family a sample name belongs to.
fn family_of<'a>(name: &'a str, families: &BTreeMap<String, Family>) -> Option<&'a str> {
    if families.contains_key(name) {
        return Some(name);
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && families
                .get(base)
                .is_some_and(|f| f.kind == "histogram" || f.kind == "summary")
        {
            return Some(base);
        }
    }
    None
}

/// Parses a whole page; the error names the line.
pub fn parse(text: &str) -> Result<Page, String> {
    let mut page = Page::default();
    let mut seen = BTreeSet::new();
    assert!(text.ends_with('\n'), "the page must end with a newline");
    for (number, line) in text.lines().enumerate() {
        let fail = |why: String| format!("line {}: {why}: {line:?}", number + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            let keyword = parts.next().unwrap_or_default();
            let name = parts.next().unwrap_or_default();
            let rest = parts.next().unwrap_or_default();
            if !matches!(keyword, "HELP" | "TYPE") {
                continue;
            }
            if !is_name(name, false) {
                return Err(fail(format!("bad metric name {name:?}")));
            }
            let family = page
                .families
                .entry(name.to_owned())
                .or_insert_with(|| Family {
                    name: name.to_owned(),
                    kind: String::new(),
                    help: String::new(),
                    samples: vec![],
                });
            if keyword == "TYPE" {
                if !family.kind.is_empty() {
                    return Err(fail("TYPE declared twice".into()));
                }
                if !family.samples.is_empty() {
                    return Err(fail("TYPE after samples".into()));
                }
                if !matches!(
                    rest,
                    "counter" | "gauge" | "histogram" | "summary" | "untyped"
                ) {
                    return Err(fail(format!("bad type {rest:?}")));
                }
                family.kind = rest.to_owned();
            } else {
                if !family.help.is_empty() {
                    return Err(fail("HELP declared twice".into()));
                }
                family.help = rest.to_owned();
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| fail("no value".into()))?;
        let name = &line[..name_end];
        if !is_name(name, false) {
            return Err(fail(format!("bad metric name {name:?}")));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(fail)?
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let mut fields = rest
            .strip_prefix(' ')
            .ok_or_else(|| fail("no space before the value".into()))?
            .split(' ');
        let value = parse_value(fields.next().unwrap_or_default()).map_err(fail)?;
        if let Some(ts) = fields.next() {
            ts.parse::<i64>()
                .map_err(|_| fail(format!("bad timestamp {ts:?}")))?;
        }
        if fields.next().is_some() {
            return Err(fail("trailing text".into()));
        }
        let family = family_of(name, &page.families)
            .ok_or_else(|| fail(format!("{name} has no # TYPE before it")))?
            .to_owned();
        if !seen.insert((name.to_owned(), labels.clone())) {
            return Err(fail("series repeated".into()));
        }
        let family = page.families.get_mut(&family).expect("found above");
        if family.kind == "counter" && (value.is_nan() || value < 0.0) {
            return Err(fail("a counter must be a number >= 0".into()));
        }
        family.samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    for family in page.families.values() {
        if family.kind.is_empty() {
            return Err(format!("{} has HELP but no TYPE", family.name));
        }
        if family.kind == "histogram" {
            check_histogram(family)?;
        }
    }
    Ok(page)
}

fn check_histogram(family: &Family) -> Result<(), String> {
    let bucket = format!("{}_bucket", family.name);
    let mut last = (f64::NEG_INFINITY, 0.0);
    for sample in family.samples.iter().filter(|s| s.name == bucket) {
        let le = parse_value(sample.labels.get("le").ok_or("bucket without le")?)?;
        if le <= last.0 || sample.value < last.1 {
            return Err(format!(
                "{}: buckets must ascend and be cumulative",
                family.name
            ));
        }
        last = (le, sample.value);
    }
    if last.0 != f64::INFINITY {
        return Err(format!("{}: no +Inf bucket", family.name));
    }
    let count = family
        .samples
        .iter()
        .find(|s| s.name == format!("{}_count", family.name))
        .ok_or("histogram without _count")?;
    if count.value != last.1 {
        return Err(format!("{}: +Inf bucket != _count", family.name));
    }
    if !family
        .samples
        .iter()
        .any(|s| s.name == format!("{}_sum", family.name))
    {
        return Err(format!("{}: no _sum", family.name));
    }
    Ok(())
}

#[test]
fn the_parser_refuses_malformed_pages() {
    let bad = [
        "x 1\n",
        "# TYPE x counter\nx{a=\"1\"} 1\nx{a=\"1\"} 2\n",
        "# TYPE x counter\nx -1\n",
        "# TYPE x counter\nx{a=1} 1\n",
        "# TYPE x counter\n# TYPE x counter\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 0\nh_count 1\n",
        "# TYPE x gauge\nx 1 2 3\n",
    ];
    for page in bad {
        assert!(parse(page).is_err(), "accepted:\n{page}");
    }
    let good = "# HELP x X.\n# TYPE x counter\nx{a=\"q\\\"\"} 1\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3.5\nh_count 2\n";
    let page = parse(good).unwrap();
    assert_eq!(page.value("x", &[("a", "q\"")]), Some(1.0));
    assert_eq!(page.value("h_count", &[]), Some(2.0));
}
