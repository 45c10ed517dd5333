//! `/api/birds`: a JSON query API over a small bundled dataset, with typed filters.
//!
//! The counts are illustrative (garden-survey style numbers made up for the lab), not data
//! from a real survey: they exist so the API has something realistic-looking to filter.

use std::sync::OnceLock;

use protolab_wire::http1::query;
use serde::Serialize;

const CSV: &str = include_str!("birds.csv");

/// Largest `limit` a query may ask for.
pub const MAX_LIMIT: usize = 1000;
/// `limit` when none is given.
pub const DEFAULT_LIMIT: usize = 100;

/// One row: how many birds of a species were counted in a year.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    /// Survey year.
    pub year: u16,
    /// Common English name.
    pub species: String,
    /// Birds counted.
    pub count: u32,
}

/// The bundled dataset.
pub fn records() -> &'static [Record] {
    static RECORDS: OnceLock<Vec<Record>> = OnceLock::new();
    RECORDS.get_or_init(|| {
        CSV.lines()
            .skip(1)
            .filter_map(|line| {
                let mut fields = line.splitn(3, ',');
                Some(Record {
                    year: fields.next()?.parse().ok()?,
                    species: fields.next()?.to_string(),
                    count: fields.next()?.parse().ok()?,
                })
            })
            .collect()
    })
}

/// Sort order of results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    /// By year, then species (the default).
    #[default]
    Year,
    /// By species name.
    Species,
    /// By count.
    Count,
}

/// A validated query. Build it with [`Query::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Only this year.
    pub year: Option<u16>,
    /// Years from this one on.
    pub from: Option<u16>,
    /// Years up to this one.
    pub to: Option<u16>,
    /// Species whose name contains this, case-insensitively.
    pub species: Option<String>,
    /// Counts of at least this.
    pub min_count: Option<u32>,
    /// Counts of at most this.
    pub max_count: Option<u32>,
    /// Sort key.
    pub sort: SortKey,
    /// Descending order (`sort=-count`).
    pub descending: bool,
    /// Most results returned.
    pub limit: usize,
}

/// A query parameter that is unknown, repeated or of the wrong type. `parameter` names it, so
/// the 400 response can say exactly which one to fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueryError {
    /// The offending parameter (or `query` when the string itself is malformed).
    pub parameter: String,
    /// What is wrong and what is accepted.
    pub error: String,
}

impl Query {
    /// The parameters this API understands, for error messages.
    pub const PARAMETERS: &'static str =
        "year, from, to, species, min_count, max_count, sort, limit";

    /// Parses and validates a raw query string (without `?`).
    pub fn parse(raw: &str) -> Result<Self, QueryError> {
        let pairs = query::pairs(raw).map_err(|e| QueryError {
            parameter: "query".into(),
            error: format!("the query string is malformed: {e}"),
        })?;
        let mut q = Self {
            year: None,
            from: None,
            to: None,
            species: None,
            min_count: None,
            max_count: None,
            sort: SortKey::Year,
            descending: false,
            limit: DEFAULT_LIMIT,
        };
        let mut seen: Vec<&str> = Vec::new();
        for (name, value) in &pairs {
            if name.is_empty() {
                return Err(bad("query", format!("`={value}` has no parameter name")));
            }
            if seen.contains(&name.as_str()) {
                return Err(bad(
                    name,
                    format!("parameter `{name}` is given more than once"),
                ));
            }
            seen.push(name);
            match name.as_str() {
                "year" => q.year = Some(number(name, value, "a year such as 2021")?),
                "from" => q.from = Some(number(name, value, "a year such as 2019")?),
                "to" => q.to = Some(number(name, value, "a year such as 2023")?),
                "min_count" => q.min_count = Some(number(name, value, "a whole number ≥ 0")?),
                "max_count" => q.max_count = Some(number(name, value, "a whole number ≥ 0")?),
                "species" => {
                    if value.trim().is_empty() {
                        return Err(bad(name, "parameter `species` must not be empty".into()));
                    }
                    q.species = Some(value.trim().to_lowercase());
                }
                "sort" => {
                    let (desc, key) = value
                        .strip_prefix('-')
                        .map_or((false, value.as_str()), |k| (true, k));
                    q.descending = desc;
                    q.sort = match key {
                        "year" => SortKey::Year,
                        "species" => SortKey::Species,
                        "count" => SortKey::Count,
                        _ => {
                            return Err(bad(
                                name,
                                format!("parameter `sort` must be year, species or count (prefix - for descending), got `{value}`"),
                            ))
                        }
                    };
                }
                "limit" => {
                    let limit: usize = number(name, value, "a whole number")?;
                    if !(1..=MAX_LIMIT).contains(&limit) {
                        return Err(bad(
                            name,
                            format!(
                                "parameter `limit` must be between 1 and {MAX_LIMIT}, got {limit}"
                            ),
                        ));
                    }
                    q.limit = limit;
                }
                other => {
                    return Err(bad(
                        other,
                        format!(
                            "unknown parameter `{other}`; this API takes {}",
                            Self::PARAMETERS
                        ),
                    ))
                }
            }
        }
        if let (Some(from), Some(to)) = (q.from, q.to) {
            if from > to {
                return Err(bad(
                    "from",
                    format!("parameter `from` ({from}) is after `to` ({to})"),
                ));
            }
        }
        Ok(q)
    }

    /// Runs the query over [`records`]: `(results, total matches before the limit)`.
    pub fn run(&self) -> (Vec<&'static Record>, usize) {
        let mut hits: Vec<&Record> = records().iter().filter(|r| self.matches(r)).collect();
        hits.sort_by(|a, b| {
            let order = match self.sort {
                SortKey::Year => a.year.cmp(&b.year).then_with(|| a.species.cmp(&b.species)),
                SortKey::Species => a.species.cmp(&b.species).then_with(|| a.year.cmp(&b.year)),
                SortKey::Count => a.count.cmp(&b.count).then_with(|| a.year.cmp(&b.year)),
            };
            if self.descending {
                order.reverse()
            } else {
                order
            }
        });
        let total = hits.len();
        hits.truncate(self.limit);
        (hits, total)
    }

    fn matches(&self, r: &Record) -> bool {
        self.year.is_none_or(|y| r.year == y)
            && self.from.is_none_or(|y| r.year >= y)
            && self.to.is_none_or(|y| r.year <= y)
            && self.min_count.is_none_or(|c| r.count >= c)
            && self.max_count.is_none_or(|c| r.count <= c)
            && self
                .species
                .as_deref()
                .is_none_or(|s| r.species.to_lowercase().contains(s))
    }
}

fn bad(parameter: &str, error: String) -> QueryError {
    QueryError {
        parameter: parameter.to_string(),
        error,
    }
}

fn number<T: std::str::FromStr>(name: &str, value: &str, what: &str) -> Result<T, QueryError> {
    value.trim().parse().map_err(|_| {
        bad(
            name,
            format!("parameter `{name}` must be {what}, got `{value}`"),
        )
    })
}

/// The JSON body for a query string: `Ok` for 200, `Err` for 400.
pub(crate) fn respond(raw_query: &str) -> Result<String, String> {
    #[derive(Serialize)]
    struct Page<'a> {
        count: usize,
        total: usize,
        results: Vec<&'a Record>,
    }
    match Query::parse(raw_query) {
        Ok(q) => {
            let (results, total) = q.run();
            Ok(to_json(&Page {
                count: results.len(),
                total,
                results,
            }))
        }
        Err(e) => Err(to_json(&e)),
    }
}

/// Our response types always serialize; a failure would be a bug, reported in the body.
fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| format!(r#"{{"error":"{e}"}}"#))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_loads_every_row() {
        assert_eq!(records().len(), CSV.lines().count() - 1);
        assert!(records().iter().all(|r| r.count > 0));
    }

    #[test]
    fn filters_compose() {
        let q = Query::parse("from=2020&to=2021&species=tit&sort=-count&limit=3").unwrap();
        let (rows, total) = q.run();
        assert_eq!(rows.len(), 3);
        assert_eq!(total, 4, "two tit species over two years");
        assert!(rows.windows(2).all(|w| w[0].count >= w[1].count));
        assert!(rows
            .iter()
            .all(|r| (2020..=2021).contains(&r.year) && r.species.contains("Tit")));
    }

    /// Query strings come from the network: whatever bytes arrive, parsing answers Ok or a
    /// QueryError naming a parameter, never a panic. Seeded, so a failure reproduces.
    #[test]
    fn arbitrary_query_strings_never_panic() {
        const ALPHABET: &[u8] =
            b"yearfromtospecisminax_countsortlimt=&%+-0123456789ABCDEF\xc3\xa9 ";
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = (next() % 40) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
                .collect();
            let raw = String::from_utf8_lossy(&bytes);
            match Query::parse(&raw) {
                Ok(q) => assert!(q.run().0.len() <= q.limit),
                Err(e) => assert!(!e.parameter.is_empty() && !e.error.is_empty(), "{raw:?}"),
            }
        }
    }

    #[test]
    fn errors_name_the_parameter() {
        for (query, param) in [
            ("year=abc", "year"),
            ("colour=red", "colour"),
            ("limit=0", "limit"),
            ("sort=wingspan", "sort"),
            ("year=2020&year=2021", "year"),
            ("from=2022&to=2020", "from"),
            ("species=%zz", "query"),
            ("=2020", "query"),
        ] {
            let err = Query::parse(query).unwrap_err();
            assert_eq!(err.parameter, param, "{query}: {}", err.error);
        }
    }
}
