//! JSON Schema (the subset OpenAI's structured outputs use) compiled to grammar nodes.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::GrammarError;
use crate::machine::{INF, Node, NodeId, Prop};

/// Deepest nesting of schemas inside one another.
const MAX_SCHEMA_DEPTH: usize = 48;
/// Most grammar nodes one schema may compile to.
const MAX_NODES: usize = 20_000;
/// Most `enum` values, properties of one object, or `prefixItems`.
const MAX_LIST: usize = 1024;
/// Largest `minItems` (the shortest output grows with it).
const MAX_MIN_ITEMS: u64 = 1024;
/// Largest `minLength`.
const MAX_MIN_LENGTH: u64 = 100_000;

/// Keywords whose constraint the grammar cannot guarantee.
const UNSUPPORTED: &[&str] = &[
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "uniqueItems",
    "not",
    "if",
    "then",
    "else",
    "patternProperties",
    "propertyNames",
    "minProperties",
    "maxProperties",
    "dependentRequired",
    "dependentSchemas",
    "dependencies",
    "contains",
    "minContains",
    "maxContains",
    "unevaluatedProperties",
    "unevaluatedItems",
    "additionalItems",
    "$dynamicRef",
    "$recursiveRef",
    "contentSchema",
];

/// Keywords that constrain a value (others are annotations and are ignored).
const CONSTRAINTS: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "prefixItems",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "enum",
    "const",
    "anyOf",
    "oneOf",
    "allOf",
    "$ref",
    "nullable",
];

const TYPES: &[&str] = &[
    "object", "array", "string", "number", "integer", "boolean", "null",
];

/// Builds grammar nodes from schemas.
pub(crate) struct Compiler<'a> {
    pub nodes: Vec<Node>,
    /// The document `$ref`s point into.
    root: &'a Value,
    /// Where the document sits in the request (for error paths).
    root_path: String,
    refs: HashMap<String, NodeId>,
    any: Option<NodeId>,
    pub key_string: NodeId,
}

fn unsupported(keyword: &str, path: &str) -> GrammarError {
    GrammarError::Unsupported {
        keyword: keyword.to_owned(),
        path: path.to_owned(),
    }
}

fn invalid(path: &str, reason: impl Into<String>) -> GrammarError {
    GrammarError::Invalid {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// A JSON pointer path one level down (`~` and `/` escaped).
fn child(path: &str, key: &str) -> String {
    format!("{path}/{}", key.replace('~', "~0").replace('/', "~1"))
}

impl<'a> Compiler<'a> {
    pub fn new(root: &'a Value) -> Compiler<'a> {
        let mut c = Compiler {
            nodes: Vec::new(),
            root,
            root_path: String::new(),
            refs: HashMap::new(),
            any: None,
            key_string: 0,
        };
        c.key_string = c.add(Node::String { min: 0, max: INF });
        c
    }

    /// Compile another document (a tool's parameters) with its own `$ref` targets.
    pub fn set_root(&mut self, root: &'a Value, path: String) {
        self.root = root;
        self.root_path = path;
        self.refs.clear();
    }

    pub fn add(&mut self, node: Node) -> NodeId {
        self.nodes.push(node);
        self.nodes.len() as u32 - 1
    }

    fn check_size(&self) -> Result<(), GrammarError> {
        if self.nodes.len() > MAX_NODES {
            return Err(GrammarError::TooLarge {
                reason: format!("it compiles to more than {MAX_NODES} rules"),
            });
        }
        Ok(())
    }

    pub fn lit(&mut self, bytes: &[u8]) -> NodeId {
        self.add(Node::Lit(bytes.to_vec()))
    }

    /// One of several texts, each followed by its own continuation (if any), factored by
    /// common prefixes: the matcher keeps one stack per distinct prefix instead of one per
    /// text (an `enum` of hundreds of values, tool names).
    pub fn lit_trie(&mut self, mut entries: Vec<(Vec<u8>, Option<NodeId>)>) -> NodeId {
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|a, b| a.0 == b.0);
        self.lit_group(&entries)
    }

    /// `entries`: sorted, distinct texts (an empty one ends right here).
    fn lit_group(&mut self, entries: &[(Vec<u8>, Option<NodeId>)]) -> NodeId {
        let mut alts = Vec::new();
        let mut ends_here = None;
        let mut i = 0;
        while i < entries.len() {
            let first = &entries[i].0;
            let Some(&b) = first.first() else {
                ends_here = Some(entries[i].1);
                i += 1;
                continue;
            };
            let mut j = i + 1;
            while j < entries.len() && entries[j].0.first() == Some(&b) {
                j += 1;
            }
            let group = &entries[i..j];
            // The group's common prefix.
            let mut lcp = first.len();
            for (t, _) in &group[1..] {
                lcp = lcp.min(first.iter().zip(t).take_while(|(x, y)| x == y).count());
            }
            let head = self.lit(&first[..lcp]);
            let rest: Vec<(Vec<u8>, Option<NodeId>)> =
                group.iter().map(|(t, c)| (t[lcp..].to_vec(), *c)).collect();
            let node = if let [(r, c)] = rest.as_slice()
                && r.is_empty()
            {
                match c {
                    Some(c) => self.add(Node::Seq(vec![head, *c])),
                    None => head,
                }
            } else {
                let tail = self.lit_group(&rest);
                self.add(Node::Seq(vec![head, tail]))
            };
            alts.push(node);
            i = j;
        }
        match ends_here {
            // One of the texts ends here: what follows is optional (or its continuation).
            Some(cont) => {
                let more = self.add(Node::Alt(alts));
                match cont {
                    Some(c) => self.add(Node::Alt(vec![c, more])),
                    None => self.add(Node::Repeat {
                        item: more,
                        sep: None,
                        min: 0,
                        max: 1,
                    }),
                }
            }
            None if alts.len() == 1 => alts[0],
            None => self.add(Node::Alt(alts)),
        }
    }

    /// Any JSON value.
    pub fn any(&mut self) -> NodeId {
        if let Some(a) = self.any {
            return a;
        }
        let any = self.add(Node::Alt(Vec::new()));
        self.any = Some(any);
        let obj = self.add(Node::Object {
            props: Vec::new(),
            any_value: Some(any),
        });
        let arr = self.add(Node::Array {
            prefix: Vec::new(),
            items: Some(any),
            min: 0,
            max: INF,
        });
        let alts = vec![
            obj,
            arr,
            self.key_string,
            self.add(Node::Number { integer: false }),
            self.lit(b"true"),
            self.lit(b"false"),
            self.lit(b"null"),
        ];
        self.nodes[any as usize] = Node::Alt(alts);
        any
    }

    /// Any JSON object.
    pub fn any_object(&mut self) -> NodeId {
        let any = self.any();
        self.add(Node::Object {
            props: Vec::new(),
            any_value: Some(any),
        })
    }

    /// Compile the root document.
    pub fn compile_root(&mut self) -> Result<NodeId, GrammarError> {
        let root = self.root;
        let path = self.root_path.clone();
        let id = self.add(Node::Alt(Vec::new()));
        self.refs.insert("#".to_owned(), id);
        let body = self.compile(root, &path, 0)?;
        self.nodes[id as usize] = Node::Alt(vec![body]);
        Ok(id)
    }

    fn compile(&mut self, v: &Value, path: &str, depth: usize) -> Result<NodeId, GrammarError> {
        self.check_size()?;
        if depth > MAX_SCHEMA_DEPTH {
            return Err(GrammarError::TooLarge {
                reason: format!("schemas are nested more than {MAX_SCHEMA_DEPTH} deep at `{path}`"),
            });
        }
        match v {
            Value::Bool(true) => Ok(self.any()),
            Value::Bool(false) => Err(invalid(path, "the schema `false` allows no value")),
            Value::Object(m) => self.compile_object_schema(m, path, depth),
            _ => Err(invalid(path, "a schema must be a JSON object or a boolean")),
        }
    }

    fn compile_object_schema(
        &mut self,
        m: &Map<String, Value>,
        path: &str,
        depth: usize,
    ) -> Result<NodeId, GrammarError> {
        if let Some(k) = m.keys().find(|k| UNSUPPORTED.contains(&k.as_str())) {
            return Err(unsupported(k, &child(path, k)));
        }
        // Keywords that replace the schema: only annotations may stand beside them.
        for kw in ["$ref", "anyOf", "oneOf", "allOf"] {
            if let Some(target) = m.get(kw) {
                if let Some(other) = m
                    .keys()
                    .find(|k| *k != kw && CONSTRAINTS.contains(&k.as_str()) && *k != "nullable")
                {
                    return Err(unsupported(
                        &format!("{other} beside {kw}"),
                        &child(path, other),
                    ));
                }
                let p = child(path, kw);
                let body = match kw {
                    "$ref" => self.resolve_ref(target, &p, depth)?,
                    "allOf" => match target.as_array().map(Vec::as_slice) {
                        Some([one]) => self.compile(one, &child(&p, "0"), depth + 1)?,
                        _ => {
                            return Err(unsupported("allOf with more than one schema", &p));
                        }
                    },
                    _ => {
                        let list = target
                            .as_array()
                            .filter(|l| !l.is_empty())
                            .ok_or_else(|| invalid(&p, "must be a non-empty array of schemas"))?;
                        if list.len() > MAX_LIST {
                            return Err(GrammarError::TooLarge {
                                reason: format!("`{p}` lists more than {MAX_LIST} schemas"),
                            });
                        }
                        let mut alts = Vec::with_capacity(list.len());
                        for (i, s) in list.iter().enumerate() {
                            alts.push(self.compile(s, &child(&p, &i.to_string()), depth + 1)?);
                        }
                        self.add(Node::Alt(alts))
                    }
                };
                return Ok(self.nullable(m, body));
            }
        }
        let types: Vec<&str> = match m.get("type") {
            None => Vec::new(),
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) if !ts.is_empty() => {
                let mut out = Vec::new();
                for t in ts {
                    match t.as_str() {
                        Some(s) => out.push(s),
                        None => {
                            return Err(invalid(
                                &child(path, "type"),
                                "type names must be strings",
                            ));
                        }
                    }
                }
                out
            }
            Some(_) => {
                return Err(invalid(
                    &child(path, "type"),
                    "must be a type name or a non-empty array of them",
                ));
            }
        };
        if let Some(t) = types.iter().find(|t| !TYPES.contains(t)) {
            return Err(invalid(
                &child(path, "type"),
                format!("unknown type `{t}` (use one of {})", TYPES.join(", ")),
            ));
        }
        if let Some(values) = m.get("enum").or(m.get("const")) {
            let (kw, list) = match m.get("enum") {
                Some(Value::Array(l)) => ("enum", l.clone()),
                Some(_) => return Err(invalid(&child(path, "enum"), "must be an array")),
                None => ("const", vec![values.clone()]),
            };
            if list.len() > MAX_LIST {
                return Err(GrammarError::TooLarge {
                    reason: format!("`{path}/enum` has more than {MAX_LIST} values"),
                });
            }
            let fits = |v: &Value| types.is_empty() || types.iter().any(|t| type_fits(t, v));
            let mut texts = Vec::new();
            for v in list.iter().filter(|v| fits(v)) {
                let text =
                    serde_json::to_vec(v).map_err(|e| invalid(&child(path, kw), e.to_string()))?;
                texts.push((text, None));
            }
            if texts.is_empty() {
                return Err(invalid(
                    &child(path, kw),
                    "no value is allowed (empty, or none of the values has the schema's type)",
                ));
            }
            let node = self.lit_trie(texts);
            return Ok(self.nullable(m, node));
        }
        let types = if types.is_empty() {
            vec![infer_type(m)]
        } else {
            types
        };
        let mut alts = Vec::with_capacity(types.len());
        for t in types {
            alts.push(self.compile_typed(t, m, path, depth)?);
        }
        let node = if alts.len() == 1 {
            alts[0]
        } else {
            self.add(Node::Alt(alts))
        };
        Ok(self.nullable(m, node))
    }

    /// `nullable: true` (OpenAPI) adds `null`.
    fn nullable(&mut self, m: &Map<String, Value>, node: NodeId) -> NodeId {
        if m.get("nullable") == Some(&Value::Bool(true)) {
            let null = self.lit(b"null");
            self.add(Node::Alt(vec![node, null]))
        } else {
            node
        }
    }

    fn resolve_ref(
        &mut self,
        target: &Value,
        path: &str,
        depth: usize,
    ) -> Result<NodeId, GrammarError> {
        let Some(r) = target.as_str() else {
            return Err(invalid(path, "must be a string"));
        };
        if let Some(&id) = self.refs.get(r) {
            return Ok(id);
        }
        let Some(pointer) = r.strip_prefix('#') else {
            return Err(unsupported(
                &format!("$ref to `{r}` (only references inside the schema, `#/$defs/...`)"),
                path,
            ));
        };
        let root = self.root;
        let Some(doc) = root.pointer(pointer) else {
            return Err(invalid(
                path,
                format!("`{r}` points to nothing in the schema"),
            ));
        };
        // Allocate first, so a recursive reference finds it.
        let id = self.add(Node::Alt(Vec::new()));
        self.refs.insert(r.to_owned(), id);
        let at = format!("{}{pointer}", self.root_path);
        let body = self.compile(doc, &at, depth + 1)?;
        self.nodes[id as usize] = Node::Alt(vec![body]);
        Ok(id)
    }

    fn compile_typed(
        &mut self,
        t: &str,
        m: &Map<String, Value>,
        path: &str,
        depth: usize,
    ) -> Result<NodeId, GrammarError> {
        match t {
            "string" => {
                let min = count(m, "minLength", path)?.unwrap_or(0);
                if min > MAX_MIN_LENGTH {
                    return Err(GrammarError::TooLarge {
                        reason: format!("`{path}/minLength` is over {MAX_MIN_LENGTH}"),
                    });
                }
                let max =
                    count(m, "maxLength", path)?.map_or(INF, |x| x.min(u64::from(INF - 1)) as u32);
                let min = min as u32;
                if min > max {
                    return Err(invalid(path, "minLength is greater than maxLength"));
                }
                if min == 0 && max == INF {
                    return Ok(self.key_string);
                }
                Ok(self.add(Node::String { min, max }))
            }
            "integer" => Ok(self.add(Node::Number { integer: true })),
            "number" => Ok(self.add(Node::Number { integer: false })),
            "boolean" => {
                let alts = vec![self.lit(b"true"), self.lit(b"false")];
                Ok(self.add(Node::Alt(alts)))
            }
            "null" => Ok(self.lit(b"null")),
            "array" => self.compile_array(m, path, depth),
            "object" => self.compile_object(m, path, depth),
            _ => Ok(self.any()),
        }
    }

    fn compile_object(
        &mut self,
        m: &Map<String, Value>,
        path: &str,
        depth: usize,
    ) -> Result<NodeId, GrammarError> {
        let required: Vec<&str> = match m.get("required") {
            None => Vec::new(),
            Some(Value::Array(r)) => {
                let mut out = Vec::new();
                for x in r {
                    out.push(x.as_str().ok_or_else(|| {
                        invalid(
                            &child(path, "required"),
                            "must be an array of property names",
                        )
                    })?);
                }
                out
            }
            Some(_) => {
                return Err(invalid(
                    &child(path, "required"),
                    "must be an array of property names",
                ));
            }
        };
        let Some(props) = m.get("properties") else {
            if let Some(r) = required.first() {
                return Err(invalid(
                    &child(path, "required"),
                    format!("`{r}` is required but not declared in `properties`"),
                ));
            }
            let any_value = match m.get("additionalProperties") {
                None | Some(Value::Bool(true)) => Some(self.any()),
                Some(Value::Bool(false)) => None,
                Some(s) => {
                    Some(self.compile(s, &child(path, "additionalProperties"), depth + 1)?)
                }
            };
            return Ok(self.add(Node::Object {
                props: Vec::new(),
                any_value,
            }));
        };
        let Some(props) = props.as_object() else {
            return Err(invalid(
                &child(path, "properties"),
                "must be an object of schemas",
            ));
        };
        if props.len() > MAX_LIST {
            return Err(GrammarError::TooLarge {
                reason: format!("`{path}` declares more than {MAX_LIST} properties"),
            });
        }
        if let Some(r) = required.iter().find(|r| !props.contains_key(**r)) {
            return Err(invalid(
                &child(path, "required"),
                format!("`{r}` is required but not declared in `properties`"),
            ));
        }
        let ppath = child(path, "properties");
        let mut out = Vec::with_capacity(props.len());
        for (name, schema) in props {
            let value = self.compile(schema, &child(&ppath, name), depth + 1)?;
            let key = serde_json::to_vec(&Value::String(name.clone()))
                .map_err(|e| invalid(&ppath, e.to_string()))?;
            out.push(Prop {
                key,
                value,
                required: required.contains(&name.as_str()),
            });
        }
        if out.is_empty() {
            // `properties: {}`: nothing may be invented, so only `{}`.
            return Ok(self.add(Node::Object {
                props: Vec::new(),
                any_value: None,
            }));
        }
        Ok(self.add(Node::Object {
            props: out,
            any_value: None,
        }))
    }

    fn compile_array(
        &mut self,
        m: &Map<String, Value>,
        path: &str,
        depth: usize,
    ) -> Result<NodeId, GrammarError> {
        let mut prefix = Vec::new();
        let prefix_schemas = match (m.get("prefixItems"), m.get("items")) {
            (Some(Value::Array(p)), _) => Some(("prefixItems", p)),
            (Some(_), _) => return Err(invalid(&child(path, "prefixItems"), "must be an array")),
            // Draft 7's tuple form.
            (None, Some(Value::Array(p))) => Some(("items", p)),
            _ => None,
        };
        if let Some((kw, list)) = prefix_schemas {
            if list.len() > MAX_LIST {
                return Err(GrammarError::TooLarge {
                    reason: format!("`{path}/{kw}` has more than {MAX_LIST} schemas"),
                });
            }
            let p = child(path, kw);
            for (i, s) in list.iter().enumerate() {
                prefix.push(self.compile(s, &child(&p, &i.to_string()), depth + 1)?);
            }
        }
        let items = match m.get("items") {
            None | Some(Value::Bool(true)) => Some(self.any()),
            Some(Value::Array(_)) => Some(self.any()),
            Some(Value::Bool(false)) => None,
            Some(s) => Some(self.compile(s, &child(path, "items"), depth + 1)?),
        };
        let min = count(m, "minItems", path)?.unwrap_or(0);
        if min > MAX_MIN_ITEMS {
            return Err(GrammarError::TooLarge {
                reason: format!("`{path}/minItems` is over {MAX_MIN_ITEMS}"),
            });
        }
        let min = min as u32;
        let mut max = count(m, "maxItems", path)?.map_or(INF, |x| x.min(u64::from(INF - 1)) as u32);
        if items.is_none() {
            max = max.min(prefix.len() as u32);
        }
        if min > max {
            return Err(invalid(
                path,
                "minItems is greater than maxItems (or than the items `prefixItems` allows)",
            ));
        }
        Ok(self.add(Node::Array {
            prefix,
            items,
            min,
            max,
        }))
    }
}

/// A non-negative integer keyword.
fn count(m: &Map<String, Value>, kw: &str, path: &str) -> Result<Option<u64>, GrammarError> {
    match m.get(kw) {
        None => Ok(None),
        Some(v) => match v.as_u64().or_else(|| {
            v.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                .map(|f| f.min(u64::MAX as f64) as u64)
        }) {
            Some(n) => Ok(Some(n)),
            None => Err(invalid(&child(path, kw), "must be a non-negative integer")),
        },
    }
}

/// The type a schema without `type` describes, from its keywords.
fn infer_type(m: &Map<String, Value>) -> &'static str {
    let has = |k: &str| m.contains_key(k);
    if has("properties") || has("required") || has("additionalProperties") {
        "object"
    } else if has("items") || has("prefixItems") || has("minItems") || has("maxItems") {
        "array"
    } else if has("minLength") || has("maxLength") {
        "string"
    } else {
        "any"
    }
}

fn type_fits(t: &str, v: &Value) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        _ => false,
    }
}
