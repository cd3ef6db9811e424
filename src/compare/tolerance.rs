//! Tolerances per reference mode and checkpoint kind: built-in defaults (embedded TOML), then
//! an optional user file laid over them key by key, then command-line overrides.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::CompareError;
use crate::checkpoint::Kind;

/// The built-in tolerance file.
pub const DEFAULT_TOML: &str = include_str!("default_tolerances.toml");

/// The mode assumed when the candidate's manifest does not name one.
pub const DEFAULT_MODE: &str = "ggml";

/// Table name for the gates shared by every kind of a mode.
const DEFAULT_KEY: &str = "default";

/// The gates applied to one checkpoint. Unset gates are not checked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gate {
    /// Maximum NMSE.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nmse: Option<f64>,
    /// Minimum cosine similarity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cosine: Option<f64>,
    /// Maximum absolute difference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_abs: Option<f64>,
    /// Maximum floored relative difference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_rel: Option<f64>,
    /// Maximum per-token KL divergence (logits only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kl: Option<f64>,
    /// Minimum fraction of tokens whose top-1 agrees (logits only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top1: Option<f64>,
}

impl Gate {
    /// `self` with every gate that `over` sets replaced by `over`'s.
    pub fn overlay(&self, over: &Gate) -> Gate {
        Gate {
            nmse: over.nmse.or(self.nmse),
            cosine: over.cosine.or(self.cosine),
            max_abs: over.max_abs.or(self.max_abs),
            max_rel: over.max_rel.or(self.max_rel),
            kl: over.kl.or(self.kl),
            top1: over.top1.or(self.top1),
        }
    }

    fn validate(&self, at: &str) -> Result<(), String> {
        let check = |name: &str, v: Option<f64>, lo: f64, hi: f64| match v {
            Some(x) if !(x >= lo && x <= hi) => {
                Err(format!("{at}.{name} = {x} is outside [{lo}, {hi}]"))
            }
            _ => Ok(()),
        };
        check("nmse", self.nmse, 0.0, f64::MAX)?;
        check("cosine", self.cosine, -1.0, 1.0)?;
        check("max_abs", self.max_abs, 0.0, f64::MAX)?;
        check("max_rel", self.max_rel, 0.0, f64::MAX)?;
        check("kl", self.kl, 0.0, f64::MAX)?;
        check("top1", self.top1, 0.0, 1.0)
    }
}

/// Every table name a tolerance file may use under a mode.
pub fn known_kinds() -> Vec<&'static str> {
    let mut v = vec![DEFAULT_KEY, "inp_embd", "result_norm", "result_output"];
    v.extend(Kind::ALL.iter().map(|k| k.as_str()));
    v
}

type ModeTable = BTreeMap<String, BTreeMap<String, Gate>>;

/// The tolerance set in force for a comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tolerances {
    /// mode -> kind (or `default`) -> gates, after merging files.
    modes: ModeTable,
    /// Command-line gates that win over every file, for every kind.
    pub overrides: Gate,
    /// Use this mode whatever the candidate's manifest says.
    pub force_mode: Option<String>,
    /// Where the values came from, for reports.
    pub sources: Vec<String>,
}

impl Tolerances {
    /// The built-in defaults.
    pub fn builtin() -> Self {
        let modes = parse_table(DEFAULT_TOML, "built-in tolerances")
            .expect("the built-in tolerance file is valid");
        Tolerances {
            modes,
            overrides: Gate::default(),
            force_mode: None,
            sources: vec!["built-in".into()],
        }
    }

    /// Lays a TOML document over the current values, key by key.
    pub fn merge_str(&mut self, text: &str, origin: &str) -> Result<(), CompareError> {
        let table = parse_table(text, origin)?;
        for (mode, kinds) in table {
            let dst = self.modes.entry(mode).or_default();
            for (kind, gate) in kinds {
                let merged = dst.get(&kind).cloned().unwrap_or_default().overlay(&gate);
                dst.insert(kind, merged);
            }
        }
        self.sources.push(origin.to_string());
        Ok(())
    }

    /// Lays a TOML file over the current values.
    pub fn merge_file(&mut self, path: &Path) -> Result<(), CompareError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CompareError::Tolerances(format!("{}: {e}", path.display())))?;
        self.merge_str(&text, &path.display().to_string())
    }

    /// Sets command-line gates that apply to every kind of every mode.
    pub fn set_overrides(&mut self, over: Gate) -> Result<(), CompareError> {
        over.validate("command line")
            .map_err(CompareError::Tolerances)?;
        if over != Gate::default() {
            self.sources.push("command line".into());
        }
        self.overrides = self.overrides.overlay(&over);
        Ok(())
    }

    pub fn modes(&self) -> impl Iterator<Item = &str> {
        self.modes.keys().map(String::as_str)
    }

    pub fn has_mode(&self, mode: &str) -> bool {
        self.modes.contains_key(mode)
    }

    /// The gates for a checkpoint kind (`CheckpointName::kind_str`) in a mode: the mode's
    /// default, then the kind's table, then the command-line overrides.
    pub fn gate(&self, mode: &str, kind: &str) -> Result<Gate, CompareError> {
        let table = self
            .modes
            .get(mode)
            .ok_or_else(|| CompareError::UnknownMode {
                mode: mode.to_string(),
                known: self.modes().collect::<Vec<_>>().join(", "),
            })?;
        let base = table.get(DEFAULT_KEY).cloned().unwrap_or_default();
        let with_kind = match table.get(kind) {
            Some(g) => base.overlay(g),
            None => base,
        };
        Ok(with_kind.overlay(&self.overrides))
    }

    /// The explicitly configured tables of one mode, for reports.
    pub fn mode_table(&self, mode: &str) -> Option<&BTreeMap<String, Gate>> {
        self.modes.get(mode)
    }
}

impl Default for Tolerances {
    fn default() -> Self {
        Tolerances::builtin()
    }
}

fn parse_table(text: &str, origin: &str) -> Result<ModeTable, CompareError> {
    let table: ModeTable =
        toml::from_str(text).map_err(|e| CompareError::Tolerances(format!("{origin}: {e}")))?;
    let known = known_kinds();
    for (mode, kinds) in &table {
        for (kind, gate) in kinds {
            if !known.contains(&kind.as_str()) {
                let hint = if kind == "tokens" {
                    " (tokens always compare exactly)"
                } else {
                    ""
                };
                return Err(CompareError::Tolerances(format!(
                    "{origin}: [{mode}.{kind}] is not a checkpoint kind{hint}; known: {}",
                    known.join(", ")
                )));
            }
            gate.validate(&format!("{origin}: {mode}.{kind}"))
                .map_err(CompareError::Tolerances)?;
        }
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_has_both_modes() {
        let t = Tolerances::builtin();
        assert_eq!(t.gate("ggml", "l_out").unwrap().nmse, Some(1e-6));
        // A kind's own table overrides the mode's default key by key.
        assert_eq!(t.gate("exact", "attn_norm").unwrap().nmse, Some(5e-2));
        assert_eq!(t.gate("exact", "l_out").unwrap().nmse, Some(1e-1));
        assert_eq!(t.gate("exact", "attn_norm").unwrap().cosine, Some(0.98));
        assert_eq!(t.gate("ggml", "cache_k").unwrap().nmse, Some(1e-9));
        let logits = t.gate("ggml", "result_output").unwrap();
        assert!(logits.kl.is_some() && logits.top1.is_some() && logits.nmse == Some(1e-6));
        assert!(t.gate("ggml", "l_out").unwrap().kl.is_none());
        assert!(matches!(
            t.gate("fast", "l_out"),
            Err(CompareError::UnknownMode { .. })
        ));
    }

    #[test]
    fn builtin_has_the_sets_for_other_engines() {
        let t = Tolerances::builtin();
        for set in ["independent", "independent-ggml", "independent-exact"] {
            for kind in known_kinds() {
                let g = t.gate(set, kind).unwrap();
                assert!(g.nmse.is_some() && g.cosine.is_some(), "{set}.{kind}");
            }
        }
        // The f32 pair is orders of magnitude tighter than the pair with llama.cpp.
        let f32_pair = t
            .gate("independent-exact", "attn_norm")
            .unwrap()
            .nmse
            .unwrap();
        let llama_pair = t.gate("independent", "attn_norm").unwrap().nmse.unwrap();
        assert!(f32_pair * 1e6 < llama_pair);
        assert!(t.gate("independent", "result_output").unwrap().kl.is_some());
    }

    #[test]
    fn file_overlays_key_by_key_and_flags_win() {
        let mut t = Tolerances::builtin();
        t.merge_str(
            "[ggml.kq_soft_max]\nnmse = 1e-4\n[fast.default]\nnmse = 0.5\n",
            "user.toml",
        )
        .unwrap();
        let g = t.gate("ggml", "kq_soft_max").unwrap();
        assert_eq!(g.nmse, Some(1e-4));
        assert_eq!(
            g.cosine,
            t.gate("ggml", "l_out").unwrap().cosine,
            "default keys still apply"
        );
        assert_eq!(t.gate("fast", "Qcur").unwrap().nmse, Some(0.5));
        t.set_overrides(Gate {
            nmse: Some(0.1),
            max_abs: Some(2.0),
            ..Gate::default()
        })
        .unwrap();
        let g = t.gate("ggml", "kq_soft_max").unwrap();
        assert_eq!((g.nmse, g.max_abs), (Some(0.1), Some(2.0)));
        assert_eq!(t.sources, vec!["built-in", "user.toml", "command line"]);
    }

    #[test]
    fn bad_files_are_named_errors() {
        let mut t = Tolerances::builtin();
        let e = t
            .merge_str("[ggml.l_outt]\nnmse = 1\n", "u.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("l_outt") && e.contains("not a checkpoint kind"),
            "{e}"
        );
        let e = t
            .merge_str("[ggml.l_out]\nnmsee = 1\n", "u.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("nmsee"), "{e}");
        let e = t
            .merge_str("[ggml.l_out]\ncosine = 2.0\n", "u.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cosine"), "{e}");
        let e = t
            .merge_str("[ggml.tokens]\nnmse = 1\n", "u.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("exactly"), "{e}");
        assert!(t
            .set_overrides(Gate {
                nmse: Some(-1.0),
                ..Gate::default()
            })
            .is_err());
    }
}
