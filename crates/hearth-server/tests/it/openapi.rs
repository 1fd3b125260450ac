//! The OpenAPI document against the router: every route the router serves is documented with
//! exactly the methods it answers, and `/openapi.json` serves the generated document.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::http::{send, serve};

/// A path with its parameters unnamed (`/v1/models/{*id}` and `/v1/models/{model}` are both
/// `/v1/models/{}`), to compare router paths with OpenAPI templates.
fn shape(path: &str) -> String {
    path.split('/')
        .map(|seg| if seg.starts_with('{') { "{}" } else { seg })
        .collect::<Vec<_>>()
        .join("/")
}

/// A concrete path to request for a router path.
fn sample(path: &str) -> String {
    path.split('/')
        .map(|seg| match seg {
            "{digest}" => format!("sha256:{}", "0".repeat(64)),
            s if s.starts_with('{') => "x".to_owned(),
            s => s.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn every_route_is_in_the_openapi_document_with_its_methods() {
    let server = serve().await;
    let doc = hearth_api_types::openapi::document();
    let by_shape: BTreeMap<String, String> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| (shape(k), k.clone()))
        .collect();
    let documented: BTreeSet<String> = by_shape.values().cloned().collect();
    let mut served = BTreeSet::new();
    for path in hearth_server::route_paths() {
        let t = by_shape.get(&shape(path)).cloned().unwrap_or_default();
        assert!(
            doc["paths"][&t].is_object(),
            "route {path} is not in the OpenAPI document: add it to \
             hearth_api_types::openapi::routes()"
        );
        served.insert(t.clone());
        // The methods the router answers (anything but 405) are the documented ones; axum
        // answers HEAD for a GET route.
        let mut answered = BTreeSet::new();
        for method in ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"] {
            let reply = send(server.addr, method, &sample(path), None).await;
            if reply.status != 405 {
                answered.insert(method.to_ascii_lowercase());
            }
        }
        let ops = doc["paths"][&t].as_object().unwrap();
        let mut expect: BTreeSet<String> = ops.keys().cloned().collect();
        if expect.contains("get") {
            expect.insert("head".to_owned());
        }
        assert_eq!(answered, expect, "methods of {path}");
    }
    assert_eq!(served, documented, "the document lists only served routes");
}

#[tokio::test]
async fn openapi_json_is_the_generated_document() {
    let server = serve().await;
    let reply = send(server.addr, "GET", "/openapi.json", None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let got: Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(got, hearth_api_types::openapi::document());
    assert_eq!(got["openapi"], "3.1.0");
}
