//! The response-plan file: the TOML users edit, read into the plans the core installs.
//!
//! The core does no file I/O and takes plans only as a journaled command; this crate reads
//! the file (and the files it includes), checks everything a user can get wrong, and names
//! the file, line and key of each mistake. It parses with `toml_edit`, which keeps the byte
//! span of every key and value (serde-based parsing loses them), and checks names against
//! the core's own vocabulary and ranking model, so a file that loads here is one the core
//! accepts.
//!
//! ```toml
//! include = ["local.toml"]          # paths relative to this file; each file read once
//!
//! [[plan]]
//! name = "firearms"                 # unique across all files
//! incident_type = "firearms"
//! grade = "IMMEDIATE"               # optional: IMMEDIATE, SIGNIFICANT, EXTENDED, REFERRED
//! area = "Westminster"              # optional
//! time = "22:00-06:00"              # optional, Europe/London local time, end excluded
//!
//! [[plan.group]]
//! agency = "POLICE"                 # POLICE, FIRE or AMBULANCE
//! unit_types = ["arv"]              # any of them; omit for any type of the agency
//! capabilities = ["firearms"]       # all of them
//! count = 2                         # 1-50
//! arrive_together = true            # optional, default false
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dispatch_engine::caps::Vocabulary;
use dispatch_engine::command::RequirementGroup;
use dispatch_engine::eta::RankConfig;
use dispatch_engine::plans::{PlanBook, ResponsePlan, TimeWindow, MAX_PLANS};
use dispatch_engine::types::{Agency, Grade};
use dispatch_engine::wire::limits::{MAX_GROUPS, MAX_GROUP_COUNT, MAX_GROUP_NAMES};
use toml_edit::{Item, Key, Value};

/// Deepest chain of includes followed (a cycle is caught before this; the bound keeps a
/// pathological tree of distinct files from recursing without end).
pub const MAX_INCLUDE_DEPTH: usize = 16;

/// One mistake in a plan file: where it is and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    /// 1-based; 0 when the mistake is the file as a whole (it cannot be read).
    pub line: usize,
    /// The TOML path of the key at fault (`plan[2].group[0].count`); empty for none.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Where a plan was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    pub line: usize,
    /// Its position among the file's own plans (`plan[index]` in messages).
    pub index: usize,
}

/// The plans of a file and its includes, in reading order, with where each was written.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanFile {
    pub plans: Vec<ResponsePlan>,
    pub origins: Vec<Origin>,
    /// Every file read, the top one first.
    pub files: Vec<String>,
}

/// What names are checked against: the core's vocabulary and its ranking model (whose
/// speed table lists the unit types the engine knows, per agency).
#[derive(Clone, Copy)]
pub struct Rules<'a> {
    pub vocab: &'a Vocabulary,
    pub config: &'a RankConfig,
}

impl Rules<'_> {
    fn known_types(&self, agency: Agency) -> Vec<&str> {
        let mut types: Vec<&str> =
            self.config.unit_type_speed_mps.keys().filter(|(a, _)| *a == agency).map(|(_, t)| t.as_str()).collect();
        types.sort_unstable();
        types
    }
}

/// Reads `path` and everything it includes, and checks the plans whole (names unique,
/// no ties: [`PlanBook::problems`]). Every problem found is returned, not only the first.
pub fn load(path: &Path, rules: Rules<'_>) -> Result<PlanFile, Vec<Problem>> {
    let mut reader = Reader {
        rules,
        out: PlanFile { plans: vec![], origins: vec![], files: vec![] },
        problems: vec![],
        seen: BTreeSet::new(),
    };
    reader.read(path, &mut Vec::new(), None);
    let Reader { out, mut problems, .. } = reader;
    if problems.is_empty() {
        for p in PlanBook::problems(&out.plans, rules.vocab) {
            let at = out.origins.get(p.plan).cloned().unwrap_or(Origin { file: display(path), line: 0, index: p.plan });
            let mut message = p.reason;
            if let Some(other) = p.other.and_then(|o| out.origins.get(o)) {
                message.push_str(&format!(" (the other is at {}:{})", other.file, other.line));
            }
            // The core names fields as the API does (`groups[0]`); the file writes `group`.
            let field = p.field.strip_prefix("groups").map_or(p.field.clone(), |rest| format!("group{rest}"));
            let key = if field.is_empty() {
                format!("plan[{}] ({:?})", at.index, name_of(&out, p.plan))
            } else {
                format!("plan[{}].{field}", at.index)
            };
            problems.push(Problem { file: at.file, line: at.line, key, message });
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

fn name_of(f: &PlanFile, i: usize) -> &str {
    f.plans.get(i).map_or("", |p| p.name.as_str())
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

struct Reader<'a> {
    rules: Rules<'a>,
    out: PlanFile,
    problems: Vec<Problem>,
    /// Canonical paths already read: a file included twice (not in a cycle) is read once.
    seen: BTreeSet<PathBuf>,
}

impl Reader<'_> {
    /// Reads one file; `chain` is the canonical paths of the files including it, and `from`
    /// the include that named it (for the error when it cannot be read).
    fn read(&mut self, path: &Path, chain: &mut Vec<PathBuf>, from: Option<&Problem>) {
        let shown = display(path);
        let fail = |message: String| match from {
            Some(at) => Problem { message: format!("{shown}: {message}"), ..at.clone() },
            None => Problem { file: shown.clone(), line: 0, key: String::new(), message },
        };
        let canonical = match path.canonicalize() {
            Ok(c) => c,
            Err(e) => return self.problems.push(fail(format!("cannot be read: {e}"))),
        };
        if let Some(start) = chain.iter().position(|c| *c == canonical) {
            let cycle: Vec<String> = chain[start..].iter().chain([&canonical]).map(|c| display(c)).collect();
            return self.problems.push(fail(format!("include cycle: {}", cycle.join(" -> "))));
        }
        if chain.len() >= MAX_INCLUDE_DEPTH {
            return self.problems.push(fail(format!("includes nest deeper than {MAX_INCLUDE_DEPTH} files")));
        }
        if !self.seen.insert(canonical.clone()) {
            return;
        }
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => return self.problems.push(fail(format!("cannot be read: {e}"))),
        };
        self.out.files.push(shown.clone());
        let parsed = parse(&text, &shown, self.rules);
        self.problems.extend(parsed.problems);
        chain.push(canonical);
        let base = path.parent().unwrap_or(Path::new("."));
        for (target, line) in parsed.includes {
            let at = Problem { file: shown.clone(), line, key: "include".into(), message: String::new() };
            self.read(&base.join(&target), chain, Some(&at));
        }
        chain.pop();
        for (index, (plan, line)) in parsed.plans.into_iter().enumerate() {
            self.out.plans.push(plan);
            self.out.origins.push(Origin { file: shown.clone(), line, index });
        }
    }
}

/// One file's content: its plans (with the line of each `[[plan]]`), the files it
/// includes (with the line of each name), and its problems.
#[derive(Debug, Default)]
pub struct Parsed {
    pub plans: Vec<(ResponsePlan, usize)>,
    pub includes: Vec<(String, usize)>,
    pub problems: Vec<Problem>,
}

/// Parses one file's text; no I/O (includes are returned, not followed).
pub fn parse(text: &str, file: &str, rules: Rules<'_>) -> Parsed {
    let mut p = FileParser { text, file, rules, out: Parsed::default() };
    match toml_edit::Document::parse(text) {
        Ok(doc) => p.document(doc.as_table()),
        Err(e) => {
            // The parser's own message repeats the line and a caret picture; its first line
            // says what is wrong (a duplicate key, an unclosed string).
            let line = e.span().map_or(0, |s| p.line(s.start));
            let message = e.message().lines().next().unwrap_or("is not valid TOML").trim().to_owned();
            p.problem(line, "", format!("not valid TOML: {message}"));
        }
    }
    p.out
}

struct FileParser<'a> {
    text: &'a str,
    file: &'a str,
    rules: Rules<'a>,
    out: Parsed,
}

/// A table written either way (`[[plan.group]]` or `{ ... }`): its keys with their items.
fn entries(item: &Item) -> Option<Vec<(&Key, &Item)>> {
    match item {
        Item::Table(t) => Some(t.iter().filter_map(|(k, _)| t.get_key_value(k)).collect()),
        Item::Value(Value::InlineTable(t)) => Some(t.iter().filter_map(|(k, _)| t.get_key_value(k)).collect()),
        _ => None,
    }
}

/// The tables of an array (`[[plan]]` tables or an inline array of inline tables).
fn tables(item: &Item) -> Option<Vec<Item>> {
    match item {
        Item::ArrayOfTables(a) => Some(a.iter().map(|t| Item::Table(t.clone())).collect()),
        Item::Value(Value::Array(a)) if a.iter().all(Value::is_inline_table) => {
            Some(a.iter().map(|v| Item::Value(v.clone())).collect())
        }
        _ => None,
    }
}

fn item_span(item: &Item) -> Option<Range<usize>> {
    match item {
        Item::Value(v) => v.span(),
        Item::Table(t) => t.span(),
        Item::ArrayOfTables(a) => a.span(),
        Item::None => None,
    }
}

impl FileParser<'_> {
    fn line(&self, offset: usize) -> usize {
        self.text.as_bytes()[..offset.min(self.text.len())].iter().filter(|&&b| b == b'\n').count() + 1
    }

    fn line_of(&self, key: &Key, item: &Item) -> usize {
        key.span().or_else(|| item_span(item)).map_or(0, |s| self.line(s.start))
    }

    fn problem(&mut self, line: usize, key: &str, message: impl Into<String>) {
        self.out.problems.push(Problem {
            file: self.file.to_owned(),
            line,
            key: key.to_owned(),
            message: message.into(),
        });
    }

    fn document(&mut self, root: &toml_edit::Table) {
        for (name, _) in root.iter() {
            let Some((key, item)) = root.get_key_value(name) else { continue };
            let line = self.line_of(key, item);
            match name {
                "include" => match strings(item) {
                    Some(paths) => self.out.includes.extend(paths.into_iter().map(|p| (p, line))),
                    None => self.problem(line, "include", "must be a list of file paths"),
                },
                "plan" => match tables(item) {
                    Some(plans) => {
                        for (i, plan) in plans.iter().enumerate() {
                            self.plan(i, plan, line);
                        }
                    }
                    None => self.problem(line, "plan", "must be [[plan]] tables"),
                },
                other => self.problem(line, other, "is not a key of a plan file (include, plan)"),
            }
        }
    }

    fn plan(&mut self, index: usize, item: &Item, fallback_line: usize) {
        let at = format!("plan[{index}]");
        let plan_line = item_span(item).map_or(fallback_line, |s| self.line(s.start));
        let Some(fields) = entries(item) else {
            return self.problem(plan_line, &at, "must be a table");
        };
        let before = self.out.problems.len();
        let mut plan = ResponsePlan {
            name: String::new(),
            incident_type: String::new(),
            grade: None,
            area: None,
            window: None,
            groups: Arc::from(Vec::new()),
        };
        let mut groups = Vec::new();
        let mut group_line = plan_line;
        for (key, value) in fields {
            let line = self.line_of(key, value);
            let field = format!("{at}.{}", key.get());
            match key.get() {
                "name" => plan.name = self.string(line, &field, value).unwrap_or_default(),
                "incident_type" => plan.incident_type = self.string(line, &field, value).unwrap_or_default(),
                "area" => plan.area = self.string(line, &field, value),
                "grade" => {
                    plan.grade = self.string(line, &field, value).and_then(|g| {
                        Grade::from_name(&g.to_ascii_uppercase(), "grade")
                            .map_err(|_| {
                                self.problem(
                                    line,
                                    &field,
                                    format!("{g:?} is not a grade (IMMEDIATE, SIGNIFICANT, EXTENDED, REFERRED)"),
                                )
                            })
                            .ok()
                    })
                }
                "time" => {
                    plan.window = self.string(line, &field, value).and_then(|t| match window(&t) {
                        Some(w) => Some(w),
                        None => {
                            self.problem(
                                line,
                                &field,
                                format!("{t:?} is not a window HH:MM-HH:MM with different ends"),
                            );
                            None
                        }
                    })
                }
                "group" => {
                    group_line = line;
                    match tables(value) {
                        Some(items) if (1..=MAX_GROUPS).contains(&items.len()) => {
                            for (j, g) in items.iter().enumerate() {
                                let gl = item_span(g).map_or(line, |s| self.line(s.start));
                                groups.extend(self.group(&format!("{field}[{j}]"), g, gl));
                            }
                        }
                        Some(items) => {
                            self.problem(line, &field, format!("has {} groups; 1 to {MAX_GROUPS} allowed", items.len()))
                        }
                        None => self.problem(line, &field, "must be [[plan.group]] tables"),
                    }
                }
                other => self.problem(
                    line,
                    &field,
                    format!("{other:?} is not a key of a plan (name, incident_type, grade, area, time, group)"),
                ),
            }
        }
        for (required, value) in [("name", &plan.name), ("incident_type", &plan.incident_type)] {
            if value.is_empty() && self.out.problems.len() == before {
                self.problem(plan_line, &format!("{at}.{required}"), "is required");
            }
        }
        if groups.is_empty() && self.out.problems.len() == before {
            self.problem(group_line, &format!("{at}.group"), "a plan needs at least one [[plan.group]]");
        }
        if self.out.problems.len() == before {
            plan.groups = Arc::from(groups);
            self.out.plans.push((plan, plan_line));
        }
    }

    fn group(&mut self, at: &str, item: &Item, group_line: usize) -> Option<RequirementGroup> {
        let Some(fields) = entries(item) else {
            self.problem(group_line, at, "must be a table");
            return None;
        };
        let before = self.out.problems.len();
        let mut agency = None;
        let mut count = None;
        let mut g = RequirementGroup {
            agency: Agency::Police,
            unit_types: vec![],
            capabilities: vec![],
            count: 0,
            arrive_together: false,
        };
        let mut types_at = None;
        for (key, value) in fields {
            let line = self.line_of(key, value);
            let field = format!("{at}.{}", key.get());
            match key.get() {
                "agency" => {
                    agency = self.string(line, &field, value).and_then(|a| {
                        Agency::from_name(&a.to_ascii_uppercase(), "agency")
                            .map_err(|_| {
                                self.problem(line, &field, format!("{a:?} is not an agency (POLICE, FIRE, AMBULANCE)"))
                            })
                            .ok()
                    })
                }
                "unit_types" => {
                    g.unit_types = self.names(line, &field, value);
                    types_at = Some((line, field));
                }
                "capabilities" => {
                    g.capabilities = self.names(line, &field, value);
                    for (i, c) in g.capabilities.iter().enumerate() {
                        if self.rules.vocab.encode(&[c]).is_err() {
                            self.problem(
                                line,
                                &format!("{field}[{i}]"),
                                format!("{c:?} is not in the capability vocabulary"),
                            );
                        }
                    }
                }
                "count" => match value.as_integer() {
                    Some(n) if (1..=i64::from(MAX_GROUP_COUNT)).contains(&n) => count = Some(n as u32),
                    Some(n) => self.problem(line, &field, format!("{n} is outside [1, {MAX_GROUP_COUNT}]")),
                    None => self.problem(line, &field, "must be a whole number"),
                },
                "arrive_together" => match value.as_bool() {
                    Some(b) => g.arrive_together = b,
                    None => self.problem(line, &field, "must be true or false"),
                },
                other => self.problem(
                    line,
                    &field,
                    format!(
                        "{other:?} is not a key of a group (agency, unit_types, capabilities, count, arrive_together)"
                    ),
                ),
            }
        }
        match agency {
            Some(a) => g.agency = a,
            None if self.out.problems.len() == before => {
                self.problem(group_line, &format!("{at}.agency"), "is required")
            }
            None => {}
        }
        if let (Some(a), Some((line, field))) = (agency, types_at) {
            let rules = self.rules;
            let known = rules.known_types(a);
            for (i, t) in g.unit_types.iter().enumerate() {
                if !known.contains(&t.as_str()) {
                    let message = format!("{t:?} is not a {} unit type ({})", a.name(), known.join(", "));
                    self.problem(line, &format!("{field}[{i}]"), message);
                }
            }
        }
        match count {
            Some(c) => g.count = c,
            None if self.out.problems.len() == before => {
                self.problem(group_line, &format!("{at}.count"), "is required")
            }
            None => {}
        }
        (self.out.problems.len() == before).then_some(g)
    }

    fn string(&mut self, line: usize, field: &str, item: &Item) -> Option<String> {
        match item.as_str() {
            Some(s) if !s.is_empty() => Some(s.to_owned()),
            _ => {
                self.problem(line, field, "must be a non-empty string");
                None
            }
        }
    }

    fn names(&mut self, line: usize, field: &str, item: &Item) -> Vec<String> {
        match strings(item) {
            Some(names) if names.len() <= MAX_GROUP_NAMES => names,
            Some(_) => {
                self.problem(line, field, format!("names more than {MAX_GROUP_NAMES}"));
                vec![]
            }
            None => {
                self.problem(line, field, "must be a list of strings");
                vec![]
            }
        }
    }
}

fn strings(item: &Item) -> Option<Vec<String>> {
    item.as_array()?.iter().map(|v| v.as_str().map(str::to_owned)).collect()
}

/// `HH:MM-HH:MM` as a window; `None` when malformed or empty.
pub fn window(text: &str) -> Option<TimeWindow> {
    let minute = |hm: &str| -> Option<u16> {
        let (h, m) = hm.trim().split_once(':')?;
        let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
        (h < 24 && m < 60 && hm.trim().len() == 5).then_some(h * 60 + m)
    };
    let (start, end) = text.split_once('-')?;
    let w = TimeWindow { start_minute: minute(start)?, end_minute: minute(end)? };
    (w.start_minute != w.end_minute).then_some(w)
}

/// Most plans a file (with its includes) may hold: the core's limit.
pub const MAX_FILE_PLANS: usize = MAX_PLANS;

#[cfg(test)]
mod tests;
