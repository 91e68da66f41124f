//! Reading and writing JSON values along paths of [`Step`]s.
//!
//! Reads never fail: a missing step gives `None`. Writes create the objects a path needs
//! below an existing object (as setting `@body().a.b` on `{}` gives `{"a": {"b": …}}`), but
//! never replace a value of another type and never grow an array.

use serde_json::{Map, Value};

use crate::expr::Step;

/// The value at `steps` below `value`.
pub fn get<'v>(value: &'v Value, steps: &[Step]) -> Option<&'v Value> {
    let mut current = value;
    for step in steps {
        current = match (step, current) {
            (Step::Key(key), Value::Object(map)) => map.get(key)?,
            (Step::Index(i), Value::Array(items)) => items.get(*i)?,
            _ => return None,
        };
    }
    Some(current)
}

/// The value at `steps` below `value`, mutably.
pub fn get_mut<'v>(value: &'v mut Value, steps: &[Step]) -> Option<&'v mut Value> {
    let mut current = value;
    for step in steps {
        current = match (step, current) {
            (Step::Key(key), Value::Object(map)) => map.get_mut(key)?,
            (Step::Index(i), Value::Array(items)) => items.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(current)
}

/// Sets the value at `steps`, creating missing objects on the way. Returns whether the
/// value could be placed.
pub fn set(value: &mut Value, steps: &[Step], new: Value) -> bool {
    let Some((last, parents)) = steps.split_last() else {
        *value = new;
        return true;
    };
    let mut current = value;
    for step in parents {
        current = match (step, current) {
            (Step::Key(key), Value::Object(map)) => map
                .entry(key.clone())
                .or_insert_with(|| Value::Object(Map::new())),
            (Step::Index(i), Value::Array(items)) => match items.get_mut(*i) {
                Some(item) => item,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, current) {
        (Step::Key(key), Value::Object(map)) => {
            map.insert(key.clone(), new);
            true
        }
        (Step::Index(i), Value::Array(items)) => match items.get_mut(*i) {
            Some(slot) => {
                *slot = new;
                true
            }
            None => false,
        },
        _ => false,
    }
}

/// Removes and returns the value at `steps` (not the root).
pub fn remove(value: &mut Value, steps: &[Step]) -> Option<Value> {
    let (last, parents) = steps.split_last()?;
    match (last, get_mut(value, parents)?) {
        (Step::Key(key), Value::Object(map)) => map.shift_remove(key),
        (Step::Index(i), Value::Array(items)) if *i < items.len() => Some(items.remove(*i)),
        _ => None,
    }
}

/// The paths of the items a policy works on: each element when the value at `parent` is
/// an array, else the value itself. Empty when `parent` names nothing.
pub fn items(value: &Value, parent: &[Step]) -> Vec<Vec<Step>> {
    match get(value, parent) {
        None => Vec::new(),
        Some(Value::Array(elements)) => (0..elements.len())
            .map(|i| {
                let mut path = parent.to_vec();
                path.push(Step::Index(i));
                path
            })
            .collect(),
        Some(_) => vec![parent.to_vec()],
    }
}

/// `parent` followed by `sub`.
pub fn join(parent: &[Step], sub: &[Step]) -> Vec<Step> {
    let mut out = Vec::with_capacity(parent.len() + sub.len());
    out.extend_from_slice(parent);
    out.extend_from_slice(sub);
    out
}

/// The text a JSON value stands for in a header, URL or string: strings as they are,
/// `null` as nothing, anything else as JSON.
pub fn text(value: &Value) -> std::borrow::Cow<'_, str> {
    match value {
        Value::String(s) => std::borrow::Cow::Borrowed(s),
        Value::Null => std::borrow::Cow::Borrowed(""),
        other => std::borrow::Cow::Owned(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use serde_json::json;

    use super::*;

    fn k(s: &str) -> Step {
        Step::Key(s.to_owned())
    }

    #[test]
    fn reads_writes_and_removes() {
        let mut v = json!({"a": {"b": [1, {"c": 2}]}});
        assert_eq!(
            get(&v, &[k("a"), k("b"), Step::Index(1), k("c")]),
            Some(&json!(2))
        );
        assert_eq!(get(&v, &[k("a"), k("x")]), None);
        assert_eq!(get(&v, &[k("a"), Step::Index(0)]), None);
        assert!(set(&mut v, &[k("a"), k("new"), k("deep")], json!(true)));
        assert_eq!(v["a"]["new"], json!({"deep": true}));
        assert!(!set(&mut v, &[k("a"), k("b"), k("x")], json!(1)));
        assert!(!set(&mut v, &[k("a"), k("b"), Step::Index(5)], json!(1)));
        assert!(set(&mut v, &[k("a"), k("b"), Step::Index(0)], json!(9)));
        assert_eq!(
            remove(&mut v, &[k("a"), k("new")]),
            Some(json!({"deep": true}))
        );
        assert_eq!(v, json!({"a": {"b": [9, {"c": 2}]}}));
        let mut root = json!(1);
        assert!(set(&mut root, &[], json!(2)));
        assert_eq!(root, json!(2));
    }

    #[test]
    fn items_of_collections_and_objects() {
        let v = json!({"list": [1, 2], "one": {"x": 1}});
        assert_eq!(
            items(&v, &[k("list")]),
            vec![
                vec![k("list"), Step::Index(0)],
                vec![k("list"), Step::Index(1)]
            ]
        );
        assert_eq!(items(&v, &[k("one")]), vec![vec![k("one")]]);
        assert!(items(&v, &[k("none")]).is_empty());
    }
}
