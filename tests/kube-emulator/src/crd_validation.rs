//! CustomResourceDefinition validation on create and update, as apiextensions-apiserver does
//! it (`pkg/apis/apiextensions/validation`, `pkg/apiserver/schema`), for the rules a CRD
//! author trips over:
//!
//! - structural schemas: a type on every node (unless `x-kubernetes-int-or-string` or
//!   `x-kubernetes-preserve-unknown-fields`), `object` at the root, `items` on arrays,
//!   `properties` and `additionalProperties` mutually exclusive, no `additionalProperties` at
//!   the root, nothing but `name`/`generateName` under the root `metadata`, the unsupported
//!   keywords (`$ref`, `definitions`, `patternProperties`, ...), `uniqueItems: true`;
//! - `x-kubernetes-list-type`/`-map-keys`: keys present, item properties, scalar, required or
//!   defaulted, not nullable; list-type on arrays only;
//! - defaults: valid against their schema and pruned (no unknown fields);
//! - CEL rules: they parse, the fields they select exist in the schema, and their estimated
//!   cost (per rule: 10,000,000 times the node's cardinality; per CRD: 100,000,000) fits.
//!
//! Simplifications: the CEL type check covers field selection only (not overloads: `self ==
//! true` on an integer passes here), and the cost estimate follows cel-go's model in its
//! dominant terms only (list sizes from `maxItems` or the 3 MiB request limit, string
//! traversals at 0.1 per character from `maxLength` or that limit, comprehension bodies times
//! the list size), so a rule near the budget can land on the other side of it than on a real
//! server.

use cel::common::ast::Expr;
use serde_json::Value;

use super::schema::{self, FieldError, go_value};

/// `celconfig.MaxRequestSizeBytes`.
const MAX_REQUEST_BYTES: u64 = 3 * 1024 * 1024;
/// `StaticEstimatedCostLimit`, per rule.
const RULE_COST_LIMIT: u64 = 10_000_000;
/// `StaticEstimatedCRDCostLimit`, per CRD version schema.
const CRD_COST_LIMIT: u64 = 100_000_000;

fn required(field: String, detail: &str) -> FieldError {
    FieldError {
        reason: "FieldValueRequired",
        field,
        detail: format!("Required value: {detail}"),
    }
}

fn forbidden(field: String, detail: &str) -> FieldError {
    FieldError {
        reason: "FieldValueForbidden",
        field,
        detail: format!("Forbidden: {detail}"),
    }
}

fn invalid(field: String, value: &str, detail: &str) -> FieldError {
    FieldError {
        reason: "FieldValueInvalid",
        field,
        detail: format!("Invalid value: {value}: {detail}"),
    }
}

/// Every error of a CRD object (empty when it is valid).
pub fn validate(crd: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let status_sub = |v: &Value| v["subresources"].get("status").is_some();
    for (i, version) in crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let Some(root) = version["schema"].get("openAPIV3Schema") else {
            continue;
        };
        let path = format!("spec.versions[{i}].schema.openAPIV3Schema");
        let mut found = Vec::new();
        if status_sub(version) && root.get("type").and_then(Value::as_str) != Some("object") {
            let t = root
                .get("type")
                .map(go_value)
                .unwrap_or_else(|| "\"\"".into());
            found.push(invalid(
                format!("spec.versions[{i}].schema.openAPIV3Schema.type"),
                &t,
                "only \"object\" is allowed as the type at the root of the schema if the status subresource is enabled",
            ));
        }
        if root.get("nullable").and_then(Value::as_bool) == Some(true) {
            found.push(forbidden(
                format!("{path}.nullable"),
                "nullable cannot be true at the root",
            ));
        }
        structural(root, &path, Level::Root, &mut found);
        if found.is_empty() {
            defaults(root, &path, &mut found);
        }
        if found.is_empty() {
            let mut total = 0u64;
            let mut costs = Vec::new();
            rules(root, &path, Some(1), &mut found, &mut costs);
            for (_, c) in &costs {
                total = total.saturating_add(*c);
            }
            if total > CRD_COST_LIMIT {
                let mut sorted = costs.clone();
                sorted.sort_by_key(|c| std::cmp::Reverse(c.1));
                for (p, _) in sorted.iter().take(4) {
                    found.push(forbidden(
                        p.clone(),
                        "contributed to estimated rule cost total exceeding cost limit for entire OpenAPIv3 schema",
                    ));
                }
                found.push(forbidden(
                    path.clone(),
                    &cost_message(
                        "x-kubernetes-validations estimated rule cost total for entire OpenAPIv3 schema",
                        total,
                        CRD_COST_LIMIT,
                    ),
                ));
            }
        }
        errors.extend(found);
    }
    errors
}

#[derive(Clone, Copy, PartialEq)]
enum Level {
    Root,
    Field,
    Item,
}

fn key_path(path: &str, key: &str) -> String {
    format!("{path}.properties[{key}]")
}

fn structural(s: &Value, path: &str, level: Level, out: &mut Vec<FieldError>) {
    let Some(m) = s.as_object() else { return };
    for (k, name) in [
        ("id", "id"),
        ("additionalItems", "additionalItems"),
        ("patternProperties", "patternProperties"),
        ("definitions", "definitions"),
        ("dependencies", "dependencies"),
        ("$ref", "$ref"),
    ] {
        if m.contains_key(k) {
            out.push(forbidden(
                format!("{path}.{k}"),
                &format!("{name} is not supported"),
            ));
        }
    }
    if m.get("uniqueItems").and_then(Value::as_bool) == Some(true) {
        out.push(forbidden(
            format!("{path}.uniqueItems"),
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ));
    }
    let ty = m.get("type").and_then(Value::as_str).unwrap_or("");
    let flag = |k: &str| m.get(k).and_then(Value::as_bool) == Some(true);
    let props = m.get("properties").and_then(Value::as_object);
    if let Some(ap) = m.get("additionalProperties") {
        if props.is_some_and(|p| !p.is_empty()) && (ap == &Value::Bool(false) || ap.is_object()) {
            out.push(forbidden(
                format!("{path}.additionalProperties"),
                "additionalProperties and properties are mutual exclusive",
            ));
        }
        if level == Level::Root {
            out.push(forbidden(
                format!("{path}.additionalProperties"),
                "must not be used at the root",
            ));
        }
        if ap.is_object() {
            structural(
                ap,
                &format!("{path}.additionalProperties"),
                Level::Field,
                out,
            );
        }
    }
    if ty.is_empty()
        && !flag("x-kubernetes-int-or-string")
        && !flag("x-kubernetes-preserve-unknown-fields")
    {
        let detail = match level {
            Level::Root => "must not be empty at the root",
            Level::Item => "must not be empty for specified array items",
            Level::Field => "must not be empty for specified object fields",
        };
        out.push(required(format!("{path}.type"), detail));
    }
    if level == Level::Root && !ty.is_empty() && ty != "object" {
        out.push(invalid(
            format!("{path}.type"),
            &format!("{ty:?}"),
            "must be object at the root",
        ));
    }
    if ty == "array" && m.get("items").is_none() {
        out.push(required(format!("{path}.items"), "must be specified"));
    }
    if let Some(items) = m.get("items") {
        if items.is_array() {
            out.push(forbidden(
                format!("{path}.items"),
                "items must be a schema object and not an array",
            ));
        } else {
            structural(items, &format!("{path}.items"), Level::Item, out);
        }
    }
    if let Some(props) = props {
        for (k, sub) in props {
            if k == "metadata" && level == Level::Root {
                let extra = sub.as_object().is_some_and(|mm| {
                    mm.iter().any(|(kk, vv)| match kk.as_str() {
                        "type" | "description" => false,
                        "properties" => vv
                            .as_object()
                            .is_some_and(|p| p.keys().any(|n| n != "name" && n != "generateName")),
                        _ => true,
                    })
                });
                if extra {
                    out.push(forbidden(
                        key_path(path, k),
                        "must not specify anything other than name and generateName, but metadata is implicitly specified",
                    ));
                }
                continue;
            }
            structural(sub, &key_path(path, k), Level::Field, out);
        }
    }
    list_types(m, ty, path, out);
}

fn list_types(m: &serde_json::Map<String, Value>, ty: &str, path: &str, out: &mut Vec<FieldError>) {
    let list_type = m.get("x-kubernetes-list-type").and_then(Value::as_str);
    let keys: Vec<&str> = m
        .get("x-kubernetes-list-map-keys")
        .and_then(Value::as_array)
        .map(|k| k.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(lt) = list_type {
        if ty.is_empty() {
            out.push(required(
                format!("{path}.type"),
                "must be array if x-kubernetes-list-type is specified",
            ));
        } else if ty != "array" {
            out.push(invalid(
                format!("{path}.type"),
                &format!("{ty:?}"),
                "must be array if x-kubernetes-list-type is specified",
            ));
        }
        if !matches!(lt, "atomic" | "set" | "map") {
            out.push(FieldError {
                reason: "FieldValueNotSupported",
                field: format!("{path}.x-kubernetes-list-type"),
                detail: format!(
                    "Unsupported value: {lt:?}: supported values: \"atomic\", \"map\", \"set\""
                ),
            });
        }
    }
    if !keys.is_empty() && list_type != Some("map") {
        out.push(required(
            format!("{path}.x-kubernetes-list-type"),
            "must be map if x-kubernetes-list-map-keys is non-empty",
        ));
    }
    let items = m.get("items");
    if matches!(list_type, Some("set" | "map"))
        && items
            .and_then(|i| i.get("nullable"))
            .and_then(Value::as_bool)
            == Some(true)
    {
        out.push(forbidden(
            format!("{path}.items.nullable"),
            &format!(
                "cannot be nullable when x-kubernetes-list-type is {}",
                list_type.unwrap_or("")
            ),
        ));
    }
    if list_type != Some("map") {
        return;
    }
    if keys.is_empty() {
        out.push(required(
            format!("{path}.x-kubernetes-list-map-keys"),
            "must not be empty if x-kubernetes-list-type is map",
        ));
    }
    let Some(items) = items else {
        out.push(required(
            format!("{path}.items"),
            "must have a schema if x-kubernetes-list-type is map",
        ));
        return;
    };
    let item_type = items.get("type").and_then(Value::as_str).unwrap_or("");
    if item_type != "object" {
        out.push(invalid(
            format!("{path}.items.type"),
            &format!("{item_type:?}"),
            "must be object if parent array's x-kubernetes-list-type is map",
        ));
        return;
    }
    let required_keys: Vec<&str> = items
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let rendered = format!(
        "[]string{{{}}}",
        keys.iter()
            .map(|k| format!("{k:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (n, k) in keys.iter().enumerate() {
        let Some(prop) = items.get("properties").and_then(|p| p.get(*k)) else {
            out.push(invalid(
                format!("{path}.x-kubernetes-list-map-keys"),
                &rendered,
                "entries must all be names of item properties",
            ));
            continue;
        };
        if keys[..n].contains(k) {
            out.push(invalid(
                format!("{path}.x-kubernetes-list-map-keys"),
                &rendered,
                "must not contain duplicate entries",
            ));
        }
        let pt = prop.get("type").and_then(Value::as_str).unwrap_or("");
        if pt == "array" || pt == "object" {
            out.push(invalid(
                format!("{path}.items.properties[{k}].type"),
                &format!("{item_type:?}"),
                "must be a scalar type if parent array's x-kubernetes-list-type is map",
            ));
        }
        if !required_keys.contains(k) && prop.get("default").is_none() {
            out.push(required(
                format!("{path}.items.properties[{k}].default"),
                "this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property",
            ));
        }
        if prop.get("nullable").and_then(Value::as_bool) == Some(true) {
            out.push(forbidden(
                format!("{path}.items.properties[{k}].nullable"),
                "this property is in x-kubernetes-list-map-keys, so it cannot be nullable",
            ));
        }
    }
}

/// Defaults must validate against their own schema and hold no unknown field.
fn defaults(s: &Value, path: &str, out: &mut Vec<FieldError>) {
    let Some(m) = s.as_object() else { return };
    if let Some(d) = m.get("default") {
        let at = format!("{path}.default");
        let admission = schema::validate_value(s, d, &at);
        if !admission.pruned.is_empty() {
            out.push(invalid(
                at.clone(),
                &go_value(d),
                "must not have unknown fields",
            ));
        }
        out.extend(admission.errors);
    }
    if let Some(props) = m.get("properties").and_then(Value::as_object) {
        for (k, sub) in props {
            defaults(sub, &key_path(path, k), out);
        }
    }
    if let Some(items) = m.get("items") {
        defaults(items, &format!("{path}.items"), out);
    }
    if let Some(ap) = m.get("additionalProperties").filter(|a| a.is_object()) {
        defaults(ap, &format!("{path}.additionalProperties"), out);
    }
}

/// The number of elements a list or map node can hold (`None`: unbounded).
fn max_elements(s: &Value) -> Option<u64> {
    match s.get("type").and_then(Value::as_str) {
        Some("array") => s.get("maxItems").and_then(Value::as_u64),
        Some("object") if s.get("additionalProperties").is_some_and(Value::is_object) => {
            s.get("maxProperties").and_then(Value::as_u64)
        }
        _ => Some(1),
    }
}

/// `DeclType.MinSerializedSize`.
fn min_size(s: Option<&Value>) -> u64 {
    match s.and_then(|s| s.get("type")).and_then(Value::as_str) {
        Some("string") | Some("object") | Some("array") => 2,
        Some("boolean") => 4,
        _ => 1,
    }
}

fn cardinality_of(s: Option<&Value>) -> u64 {
    MAX_REQUEST_BYTES / (min_size(s) + 1)
}

/// The length (characters) or size (elements) of a value of schema `s`, at most.
fn size_of(s: Option<&Value>) -> u64 {
    let Some(s) = s else { return MAX_REQUEST_BYTES };
    match s.get("type").and_then(Value::as_str) {
        Some("string") => s
            .get("maxLength")
            .and_then(Value::as_u64)
            .unwrap_or(MAX_REQUEST_BYTES - 2),
        Some("array") => s
            .get("maxItems")
            .and_then(Value::as_u64)
            .unwrap_or_else(|| cardinality_of(s.get("items"))),
        Some("object") => s
            .get("maxProperties")
            .and_then(Value::as_u64)
            .unwrap_or_else(|| cardinality_of(s.get("additionalProperties"))),
        _ => 1,
    }
}

fn cost_message(name: &str, cost: u64, limit: u64) -> String {
    let factor = cost as f64 / limit as f64;
    let f = if factor > 100.0 {
        "more than 100x".to_string()
    } else if factor < 1.5 {
        format!("{factor:.6}x")
    } else {
        format!("{factor:.1}x")
    };
    format!(
        "{name} exceeds budget by factor of {f} (try simplifying the rule, or adding maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)"
    )
}

/// How `apiextensions.ValidationRule` prints in an Invalid error.
fn rule_value(rule: &Value) -> String {
    let s = |k: &str| {
        rule.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let reason = match rule.get("reason").and_then(Value::as_str) {
        Some(r) => format!("&\"{r}\""),
        None => "(*apiextensions.FieldValueErrorReason)(nil)".into(),
    };
    let old = match rule.get("optionalOldSelf").and_then(Value::as_bool) {
        Some(b) => format!("&{b}"),
        None => "(*bool)(nil)".into(),
    };
    format!(
        "apiextensions.ValidationRule{{Rule:{:?}, Message:{:?}, MessageExpression:{:?}, Reason:{reason}, FieldPath:{:?}, OptionalOldSelf:{old}}}",
        s("rule"),
        s("message"),
        s("messageExpression"),
        s("fieldPath")
    )
}

/// Compile and cost the CEL rules of every node; `card` is the node's cardinality (`None`:
/// unbounded). Costs are collected per rule path for the CRD total.
fn rules(
    s: &Value,
    path: &str,
    card: Option<u64>,
    out: &mut Vec<FieldError>,
    costs: &mut Vec<(String, u64)>,
) {
    let Some(m) = s.as_object() else { return };
    for (i, rule) in m
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let at = format!("{path}.x-kubernetes-validations[{i}].rule");
        let Some(text) = rule
            .get("rule")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
        else {
            out.push(required(at, "rule is not specified"));
            continue;
        };
        let program = match cel::Program::compile(text) {
            Ok(p) => p,
            Err(e) => {
                out.push(invalid(
                    at,
                    &rule_value(rule),
                    &format!("compilation failed: ERROR: <input>: {e}"),
                ));
                continue;
            }
        };
        let expr = &program.expression().expr;
        let env = Env {
            vars: vec![("self".into(), Some(s)), ("oldSelf".into(), Some(s))],
        };
        if let Err(field) = check_fields(expr, &env) {
            let col = text.find(&format!(".{field}")).map(|c| c + 1).unwrap_or(1);
            out.push(invalid(
                at,
                &rule_value(rule),
                &format!("compilation failed: ERROR: <input>:1:{col}: undefined field '{field}'"),
            ));
            continue;
        }
        let base = cost(expr, &env);
        let cardinality = card.unwrap_or_else(|| cardinality_of(Some(s)));
        let total = base.saturating_mul(cardinality);
        if total > RULE_COST_LIMIT {
            out.push(forbidden(
                at.clone(),
                &cost_message("estimated rule cost", total, RULE_COST_LIMIT),
            ));
        }
        costs.push((at, total));
    }
    let child = || -> Option<u64> {
        match (card, max_elements(s)) {
            (Some(c), Some(n)) => Some(c.saturating_mul(n)),
            _ => None,
        }
    };
    if let Some(props) = m.get("properties").and_then(Value::as_object) {
        for (k, sub) in props {
            rules(sub, &key_path(path, k), card, out, costs);
        }
    }
    if let Some(items) = m.get("items") {
        rules(items, &format!("{path}.items"), child(), out, costs);
    }
    if let Some(ap) = m.get("additionalProperties").filter(|a| a.is_object()) {
        rules(
            ap,
            &format!("{path}.additionalProperties"),
            child(),
            out,
            costs,
        );
    }
}

/// Variables in scope with their schema (`None`: unknown type, not checked).
struct Env<'a> {
    vars: Vec<(String, Option<&'a Value>)>,
}

impl<'a> Env<'a> {
    fn with(&self, name: &str, s: Option<&'a Value>) -> Env<'a> {
        let mut vars = self.vars.clone();
        vars.push((name.to_string(), s));
        Env { vars }
    }
    fn get(&self, name: &str) -> Option<Option<&'a Value>> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, s)| *s)
    }
}

/// The schema of an expression's value, when it is a selection from a typed variable.
fn type_of<'a>(expr: &Expr, env: &Env<'a>) -> Option<&'a Value> {
    match expr {
        Expr::Ident(name) => env.get(name).flatten(),
        Expr::Select(sel) => {
            let parent = type_of(&sel.operand.expr, env)?;
            field_schema(parent, &sel.field)
        }
        Expr::Call(call) if call.func_name == "_[_]" => {
            let parent = type_of(&call.args.first()?.expr, env)?;
            parent
                .get("items")
                .or_else(|| parent.get("additionalProperties").filter(|a| a.is_object()))
        }
        _ => None,
    }
}

fn field_schema<'a>(parent: &'a Value, field: &str) -> Option<&'a Value> {
    if let Some(p) = parent.get("properties").and_then(|p| p.get(field)) {
        return Some(p);
    }
    parent.get("additionalProperties").filter(|a| a.is_object())
}

/// `Err(field)` for a selection of a field an object schema does not declare.
fn check_fields(expr: &Expr, env: &Env<'_>) -> Result<(), String> {
    match expr {
        Expr::Select(sel) => {
            check_fields(&sel.operand.expr, env)?;
            if let Some(parent) = type_of(&sel.operand.expr, env)
                && let Some(props) = parent.get("properties").and_then(Value::as_object)
                && parent
                    .get("x-kubernetes-preserve-unknown-fields")
                    .and_then(Value::as_bool)
                    != Some(true)
                && !props.contains_key(&sel.field)
                && !(is_root_meta(parent)
                    && matches!(sel.field.as_str(), "apiVersion" | "kind" | "metadata"))
            {
                return Err(sel.field.clone());
            }
            Ok(())
        }
        Expr::Call(call) => {
            if let Some(t) = &call.target {
                check_fields(&t.expr, env)?;
            }
            for a in &call.args {
                check_fields(&a.expr, env)?;
            }
            Ok(())
        }
        Expr::Comprehension(c) => {
            check_fields(&c.iter_range.expr, env)?;
            let item = type_of(&c.iter_range.expr, env).and_then(|r| {
                r.get("items")
                    .or_else(|| r.get("additionalProperties").filter(|a| a.is_object()))
            });
            let inner = env.with(&c.iter_var, item).with(&c.accu_var, None);
            check_fields(&c.loop_cond.expr, &inner)?;
            check_fields(&c.loop_step.expr, &inner)?;
            check_fields(&c.result.expr, &inner)
        }
        Expr::List(l) => {
            for e in &l.elements {
                check_fields(&e.expr, env)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn is_root_meta(s: &Value) -> bool {
    s.get("properties")
        .is_some_and(|p| p.get("spec").is_some() || p.get("status").is_some())
}

/// String functions whose cost grows with the string's length.
fn traverses(func: &str) -> bool {
    matches!(
        func,
        "contains"
            | "startsWith"
            | "endsWith"
            | "matches"
            | "_==_"
            | "_!=_"
            | "_+_"
            | "lowerAscii"
            | "upperAscii"
            | "trim"
            | "split"
            | "replace"
            | "indexOf"
            | "lastIndexOf"
            | "find"
            | "findAll"
            | "substring"
            | "format"
            | "quantity"
            | "isQuantity"
            | "url"
            | "isURL"
            | "ip"
            | "isIP"
            | "cidr"
            | "isCIDR"
            | "_<_"
            | "_>_"
            | "_<=_"
            | "_>=_"
    )
}

/// An estimate of the rule's cost in cel-go's units (see the module docs).
fn cost(expr: &Expr, env: &Env<'_>) -> u64 {
    match expr {
        Expr::Ident(_) => 1,
        Expr::Literal(_) => 0,
        Expr::Select(sel) => 1 + cost(&sel.operand.expr, env),
        Expr::Call(call) => {
            let mut c = 1u64;
            if let Some(t) = &call.target {
                c = c.saturating_add(cost(&t.expr, env));
            }
            for a in &call.args {
                c = c.saturating_add(cost(&a.expr, env));
            }
            if traverses(&call.func_name) {
                let operand = call.target.as_deref().or(call.args.first());
                if let Some(op) = operand {
                    let s = type_of(&op.expr, env);
                    if s.and_then(|s| s.get("type")).and_then(Value::as_str) == Some("string") {
                        c = c.saturating_add(size_of(s).div_ceil(10));
                    }
                }
            }
            c
        }
        Expr::Comprehension(comp) => {
            let range = type_of(&comp.iter_range.expr, env);
            let n = match range {
                Some(r) => size_of(Some(r)),
                None => MAX_REQUEST_BYTES / 2,
            };
            let item = range.and_then(|r| {
                r.get("items")
                    .or_else(|| r.get("additionalProperties").filter(|a| a.is_object()))
            });
            let inner = env.with(&comp.iter_var, item).with(&comp.accu_var, None);
            let step = cost(&comp.loop_step.expr, &inner)
                .saturating_add(cost(&comp.loop_cond.expr, &inner))
                .max(1);
            cost(&comp.iter_range.expr, env)
                .saturating_add(n.saturating_mul(step))
                .saturating_add(cost(&comp.result.expr, &inner))
        }
        Expr::List(l) => l
            .elements
            .iter()
            .map(|e| cost(&e.expr, env))
            .sum::<u64>()
            .max(1),
        _ => 1,
    }
}
