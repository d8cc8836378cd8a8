//! JSON merge patch (RFC 7386).

use serde_json::Value;

/// Apply an RFC 7386 merge patch: objects merge recursively, `null` deletes, anything else replaces.
pub fn merge_patch(target: &Value, patch: &Value) -> Value {
    let Value::Object(p) = patch else {
        return patch.clone();
    };
    let mut out = match target {
        Value::Object(t) => t.clone(),
        _ => serde_json::Map::new(),
    };
    for (k, pv) in p {
        if pv.is_null() {
            out.remove(k);
        } else {
            let merged = merge_patch(out.get(k).unwrap_or(&Value::Null), pv);
            out.insert(k.clone(), merged);
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::json;

    // The RFC 7386 appendix A examples, plus the recorded `configmaps/patch-merge`.
    #[rstest]
    #[case(json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"}))]
    #[case(json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"}))]
    #[case(json!({"a":"b"}), json!({"a":null}), json!({}))]
    #[case(json!({"a":"b","b":"c"}), json!({"a":null}), json!({"b":"c"}))]
    #[case(json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"}))]
    #[case(json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]}))]
    #[case(json!({"a":{"b":"c"}}), json!({"a":{"b":"d","c":null}}), json!({"a":{"b":"d"}}))]
    #[case(json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]}))]
    #[case(json!(["a","b"]), json!(["c","d"]), json!(["c","d"]))]
    #[case(json!({"a":"b"}), json!(["c"]), json!(["c"]))]
    #[case(json!({"a":"foo"}), json!(null), json!(null))]
    #[case(json!({"a":"foo"}), json!("bar"), json!("bar"))]
    #[case(json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1}))]
    #[case(json!([1,2]), json!({"a":"b","c":null}), json!({"a":"b"}))]
    #[case(json!({}), json!({"a":{"bb":{"ccc":null}}}), json!({"a":{"bb":{}}}))]
    #[case(
        json!({"metadata":{"name":"cm1","labels":{"app":"a"}},"data":{"k1":"v1"}}),
        json!({"data":{"k2":"v2"},"metadata":{"labels":{"app":null,"tier":"x"}}}),
        json!({"metadata":{"name":"cm1","labels":{"tier":"x"}},"data":{"k1":"v1","k2":"v2"}})
    )]
    fn rfc7386(#[case] target: Value, #[case] patch: Value, #[case] want: Value) {
        assert_eq!(merge_patch(&target, &patch), want);
    }
}
