use serde_json::{Value, json};

use super::*;
use crate::{ChatRequest, Message, Tool, ToolCall, ToolChoice};

fn weather() -> Tool {
    Tool {
        name: "get_weather".to_owned(),
        description: Some("Current weather in a city".to_owned()),
        parameters: json!({"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"]}),
    }
}

fn time() -> Tool {
    Tool {
        name: "get_time".to_owned(),
        description: None,
        parameters: json!({"type": "object", "properties": {}}),
    }
}

fn request(tools: Vec<Tool>, choice: ToolChoice) -> ChatRequest {
    ChatRequest {
        model: "m".to_owned(),
        messages: vec![Message::text("user", "Weather in Oslo?")],
        tools,
        tool_choice: choice,
        ..ChatRequest::default()
    }
}

fn callable() -> Vec<(String, Value)> {
    vec![
        ("get_weather".to_owned(), weather().parameters),
        ("get_time".to_owned(), time().parameters),
    ]
}

/// Feeds `deltas` through a filter and returns (text passed on while streaming, outcome).
fn run(mode: Mode, deltas: &[&str]) -> (String, Outcome) {
    let mut out = ToolOutput::new(mode);
    let mut passed = String::new();
    for d in deltas {
        passed.push_str(&out.text(d));
    }
    (passed, out.finish(&callable()).unwrap())
}

#[test]
fn auto_text_answers_pass_through_once_they_differ_from_a_call() {
    let (passed, outcome) = run(Mode::Auto, &["<", "tool", "s are fun", " indeed"]);
    assert_eq!(passed, "<tools are fun indeed");
    assert_eq!(outcome, Outcome::Text(String::new()));
}

#[test]
fn auto_text_that_is_a_prefix_of_the_opening_is_given_back_at_the_end() {
    let (passed, outcome) = run(Mode::Auto, &["  <tool"]);
    assert_eq!(passed, "");
    assert_eq!(outcome, Outcome::Text("  <tool".to_owned()));
}

#[test]
fn auto_answers_that_open_a_call_become_calls() {
    let (passed, outcome) = run(
        Mode::Auto,
        &[
            "\n<tool_",
            "call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>",
            "\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>",
        ],
    );
    assert_eq!(passed, "");
    let Outcome::Calls(calls) = outcome else {
        panic!("expected calls")
    };
    let got: Vec<(&str, &Value)> = calls
        .iter()
        .map(|c| (c.name.as_str(), &c.arguments))
        .collect();
    assert_eq!(
        got,
        vec![
            ("get_weather", &json!({"city": "Oslo"})),
            ("get_time", &json!({}))
        ]
    );
    assert_ne!(calls[0].id, calls[1].id);
    for c in &calls {
        assert!(c.id.starts_with("call_") && c.id.len() == 29, "{}", c.id);
    }
}

#[test]
fn cut_off_or_unknown_calls_are_errors() {
    let check = |text: &str, want: &str| {
        let err = parse_calls(text, &callable()).unwrap_err().to_string();
        assert!(err.contains(want), "{text:?}: {err}");
    };
    check(
        "<tool_call>\n{\"name\": \"get_weather\", \"argu",
        "raise max_tokens",
    );
    check(
        "<tool_call>\n{\"name\": \"get_weather\"}\n",
        "raise max_tokens",
    );
    check("", "raise max_tokens");
    check(
        "<tool_call>\n{\"name\": \"rm_rf\", \"arguments\": {}}\n</tool_call>",
        "not offered",
    );
}

#[test]
fn plan_checks_tools_and_choice() {
    let check = |req: ChatRequest, want: &str| {
        let err = plan(&req, false).unwrap_err().to_string();
        assert!(err.contains(want), "{err}");
    };
    check(request(vec![], ToolChoice::Required), "at least one tool");
    check(
        request(vec![weather()], ToolChoice::Function("nope".into())),
        "not among",
    );
    check(
        request(vec![weather(), weather()], ToolChoice::Auto),
        "twice",
    );
    let mut bad_name = weather();
    bad_name.name = "get weather".to_owned();
    check(
        request(vec![bad_name], ToolChoice::Auto),
        "valid function name",
    );
    let mut bad_params = weather();
    bad_params.parameters = json!("string");
    check(
        request(vec![bad_params], ToolChoice::Auto),
        "JSON Schema object",
    );
}

#[test]
fn plan_modes_and_offered_tools() {
    let check =
        |choice: ToolChoice, single: bool, mode: Option<Mode>, names: &[&str], max: usize| {
            let mut req = request(vec![weather(), time()], choice);
            req.single_tool_call = single;
            let p = plan(&req, false).unwrap();
            assert_eq!(p.mode, mode);
            let got: Vec<&str> = p.callable.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(got, names);
            assert_eq!(p.max_calls, max);
        };
    check(
        ToolChoice::Auto,
        false,
        Some(Mode::Auto),
        &["get_weather", "get_time"],
        MAX_CALLS,
    );
    check(
        ToolChoice::Required,
        true,
        Some(Mode::Required),
        &["get_weather", "get_time"],
        1,
    );
    check(
        ToolChoice::Function("get_time".into()),
        false,
        Some(Mode::Required),
        &["get_time"],
        1,
    );
    check(ToolChoice::None, false, None, &[], MAX_CALLS);
}

#[test]
fn templates_without_tools_get_them_in_the_system_message_and_calls_inline() {
    let mut req = request(vec![weather()], ToolChoice::Auto);
    req.messages = vec![
        Message::text("system", "Be brief."),
        Message::text("user", "Weather in Oslo and Rome?"),
        Message {
            role: "assistant".to_owned(),
            tool_calls: vec![
                ToolCall {
                    id: "call_1".into(),
                    name: "get_weather".into(),
                    arguments: json!({"city": "Oslo"}),
                },
                ToolCall {
                    id: "call_2".into(),
                    name: "get_weather".into(),
                    arguments: json!({"city": "Rome"}),
                },
            ],
            ..Message::default()
        },
        Message {
            role: "tool".to_owned(),
            content: "3 C".to_owned(),
            tool_call_id: Some("call_1".into()),
            ..Message::default()
        },
        Message {
            role: "tool".to_owned(),
            content: "20 C".to_owned(),
            tool_call_id: Some("call_2".into()),
            ..Message::default()
        },
    ];
    let p = plan(&req, false).unwrap();
    assert_eq!(p.template_tools, None);
    let roles: Vec<&str> = p
        .messages
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
    let system = p.messages[0]["content"].as_str().unwrap();
    assert!(system.starts_with("Be brief.\n\n"), "{system}");
    assert!(system.contains("\"name\":\"get_weather\""), "{system}");
    let assistant = p.messages[2]["content"].as_str().unwrap();
    // Each inline call must read back as the call it was.
    let back = parse_calls(assistant, &callable()).unwrap();
    let args: Vec<&Value> = back.iter().map(|c| &c.arguments).collect();
    assert_eq!(args, [&json!({"city": "Oslo"}), &json!({"city": "Rome"})]);
    assert_eq!(
        p.messages[3]["content"],
        "<tool_response>\n3 C\n</tool_response>\n<tool_response>\n20 C\n</tool_response>"
    );
}

#[test]
fn templates_with_tools_get_the_hugging_face_shapes() {
    let mut req = request(vec![weather()], ToolChoice::Auto);
    req.messages.push(Message {
        role: "assistant".to_owned(),
        tool_calls: vec![ToolCall {
            id: "call_1".into(),
            name: "get_weather".into(),
            arguments: json!({"city": "Oslo"}),
        }],
        ..Message::default()
    });
    let p = plan(&req, true).unwrap();
    assert_eq!(
        p.template_tools,
        Some(json!([{"type": "function", "function": {
            "name": "get_weather", "description": "Current weather in a city",
            "parameters": weather().parameters}}]))
    );
    assert_eq!(
        p.messages[1]["tool_calls"],
        json!([{"id": "call_1", "type": "function",
                "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}])
    );
    // tool_choice none hides the tools from the template too.
    let p = plan(&request(vec![weather()], ToolChoice::None), true).unwrap();
    assert_eq!(p.template_tools, None);
}
