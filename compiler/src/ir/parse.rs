//! Parser for the canonical text form written by [`super::text::print`].
//!
//! Contract: `print(&parse(&print(g))?) == print(g)` for every graph `g` whose text has no
//! `%!` (undefined) references. Blank lines and lines starting with `//` are skipped. Every
//! value must be defined (on an earlier line) before it is used and defined once; errors carry
//! the 1-based line and column.

use std::collections::{BTreeMap, HashMap};

use switchhead_ops::op::{
    AttentionVariant, Merge, MoeAttentionAttrs, Op, PosEncoding, SigmaMoeAttrs,
};

use super::derived::Recipe;
use super::graph::{DType, Dim, Fact, Graph, Node, NodeId, Value, ValueDef, ValueId};

/// A syntax or reference error at a position of the text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}, column {col}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// Parses the text form into a graph (values numbered in text order).
pub fn parse(text: &str) -> Result<Graph, ParseError> {
    let mut p = Parser {
        g: Graph::default(),
        ids: HashMap::new(),
    };
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end();
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with("//") {
            continue;
        }
        let mut c = Cursor {
            s: line,
            pos: line.len() - trimmed.len(),
            line: i + 1,
        };
        p.line(&mut c)?;
    }
    Ok(p.g)
}

struct Parser {
    g: Graph,
    /// Printed number -> value.
    ids: HashMap<u32, ValueId>,
}

impl Parser {
    fn line(&mut self, c: &mut Cursor<'_>) -> Result<(), ParseError> {
        if c.eat_word("input") {
            return self.input(c);
        }
        if c.eat_word("output") {
            return self.output(c);
        }
        let defs = self.defs(c)?;
        c.expect("=")?;
        if c.eat_word("weight") {
            return self.weight(c, &defs);
        }
        self.node(c, &defs)
    }

    fn input(&mut self, c: &mut Cursor<'_>) -> Result<(), ParseError> {
        let (num, col) = c.value_ref()?;
        c.expect("=")?;
        let name = c.string()?;
        c.expect(":")?;
        let fact = c.fact()?;
        c.end()?;
        let v = self.define(num, col, ValueDef::Input(name), fact, c)?;
        self.g.inputs.push(v);
        Ok(())
    }

    fn output(&mut self, c: &mut Cursor<'_>) -> Result<(), ParseError> {
        let name = c.string()?;
        c.expect("=")?;
        let v = self.use_value(c)?;
        c.end()?;
        self.g.outputs.push((name, v));
        Ok(())
    }

    fn defs(&mut self, c: &mut Cursor<'_>) -> Result<Vec<(u32, usize)>, ParseError> {
        let mut defs = vec![c.value_ref()?];
        while c.eat(",") {
            defs.push(c.value_ref()?);
        }
        Ok(defs)
    }

    fn weight(&mut self, c: &mut Cursor<'_>, defs: &[(u32, usize)]) -> Result<(), ParseError> {
        let &[(num, col)] = defs else {
            return Err(c.error_at(defs[0].1, "a weight defines exactly one value"));
        };
        let fact = c.fact()?;
        c.expect("@")?;
        let name_col = c.col();
        let name = c.string()?;
        let recipe = if c.eat("=") { Some(c.recipe()?) } else { None };
        c.end()?;
        let dup = self
            .g
            .values
            .iter()
            .any(|v| v.def == ValueDef::Weight(name.clone()));
        if dup {
            return Err(c.error_at(name_col, &format!("weight {name:?} defined twice")));
        }
        if let Some(r) = recipe {
            self.g.derived.insert(name.clone(), r);
        }
        self.define(num, col, ValueDef::Weight(name), fact, c)
            .map(|_| ())
    }

    fn node(&mut self, c: &mut Cursor<'_>, defs: &[(u32, usize)]) -> Result<(), ParseError> {
        let op_col = c.col();
        let op_name = c.word()?;
        let attrs = if c.peek_is("[") {
            c.attrs("[", "]")?
        } else {
            Attrs::default()
        };
        let op = build_op(&op_name, attrs, op_col, c)?;
        c.expect("(")?;
        let mut inputs = Vec::new();
        if !c.eat(")") {
            inputs.push(self.use_value(c)?);
            while c.eat(",") {
                inputs.push(self.use_value(c)?);
            }
            c.expect(")")?;
        }
        let facts = self.node_facts(c, defs.len())?;
        let name = if c.eat("#") {
            c.rest().to_string()
        } else {
            String::new()
        };
        c.end()?;
        let id = NodeId(self.g.nodes.len() as u32);
        let mut outputs = Vec::new();
        for (slot, (&(num, col), fact)) in defs.iter().zip(facts).enumerate() {
            outputs.push(self.define(num, col, ValueDef::Node(id, slot as u32), fact, c)?);
        }
        self.g.nodes.push(Some(Node {
            name,
            op,
            inputs,
            outputs,
        }));
        Ok(())
    }

    fn node_facts(
        &mut self,
        c: &mut Cursor<'_>,
        n: usize,
    ) -> Result<Vec<Option<Fact>>, ParseError> {
        if !c.eat(":") {
            return Ok(vec![None; n]);
        }
        let col = c.col();
        let mut facts = vec![c.fact()?];
        while c.eat(",") {
            facts.push(c.fact()?);
        }
        if facts.len() != n {
            let msg = format!("{} facts for {n} outputs", facts.len());
            return Err(c.error_at(col, &msg));
        }
        Ok(facts)
    }

    fn define(
        &mut self,
        num: u32,
        col: usize,
        def: ValueDef,
        fact: Option<Fact>,
        c: &Cursor<'_>,
    ) -> Result<ValueId, ParseError> {
        let id = ValueId(self.g.values.len() as u32);
        if self.ids.insert(num, id).is_some() {
            return Err(c.error_at(col, &format!("%{num} defined twice")));
        }
        self.g.values.push(Value { def, fact });
        Ok(id)
    }

    fn use_value(&mut self, c: &mut Cursor<'_>) -> Result<ValueId, ParseError> {
        let (num, col) = c.value_ref()?;
        self.ids
            .get(&num)
            .copied()
            .ok_or_else(|| c.error_at(col, &format!("%{num} used before its definition")))
    }
}

/// One attribute value: a word (number, bool, name), optionally with arguments `name(k=v)`.
#[derive(Debug, Default)]
struct AttrValue {
    word: String,
    args: Option<Attrs>,
    col: usize,
}

/// Attributes by name, consumed by [`build_op`]; leftovers are an error.
#[derive(Debug, Default)]
struct Attrs {
    map: BTreeMap<String, AttrValue>,
}

impl Attrs {
    fn take(&mut self, key: &str, at: usize, c: &Cursor<'_>) -> Result<AttrValue, ParseError> {
        self.map
            .remove(key)
            .ok_or_else(|| c.error_at(at, &format!("missing attribute `{key}`")))
    }

    fn num<T: std::str::FromStr>(
        &mut self,
        key: &str,
        at: usize,
        c: &Cursor<'_>,
    ) -> Result<T, ParseError> {
        let v = self.take(key, at, c)?;
        match (&v.args, v.word.parse::<T>()) {
            (None, Ok(x)) => Ok(x),
            _ => Err(c.error_at(v.col, &format!("attribute `{key}`: bad value `{}`", v.word))),
        }
    }

    fn finish(self, at: usize, c: &Cursor<'_>) -> Result<(), ParseError> {
        match self.map.into_iter().next() {
            None => Ok(()),
            Some((k, v)) => Err(c.error_at(v.col.max(at), &format!("unknown attribute `{k}`"))),
        }
    }
}

fn build_op(name: &str, mut a: Attrs, at: usize, c: &Cursor<'_>) -> Result<Op, ParseError> {
    let op = match name {
        "Embedding" => Op::Embedding,
        "Add" => Op::Add,
        "Relu" => Op::Relu,
        "ConcatSeq" => Op::ConcatSeq,
        "DenseFfn" => Op::DenseFfn,
        "LayerNorm" => Op::LayerNorm {
            eps: a.num("eps", at, c)?,
        },
        "Linear" => Op::Linear {
            bias: a.num("bias", at, c)?,
        },
        "Softmax" => Op::Softmax {
            axis: a.num("axis", at, c)?,
        },
        "MoEAttention" => Op::MoEAttention(attention_attrs(&mut a, at, c)?),
        "SigmaMoE" => Op::SigmaMoe(SigmaMoeAttrs {
            experts: a.num("experts", at, c)?,
            expert_size: a.num("expert_size", at, c)?,
            k: a.num("k", at, c)?,
        }),
        other => return Err(c.error_at(at, &format!("unknown op `{other}`"))),
    };
    a.finish(at, c)?;
    Ok(op)
}

fn attention_attrs(
    a: &mut Attrs,
    at: usize,
    c: &Cursor<'_>,
) -> Result<MoeAttentionAttrs, ParseError> {
    let variant = a.take("variant", at, c)?;
    let variant = match variant.word.as_str() {
        "experts_vo" => AttentionVariant::ExpertsVO,
        "gated" => AttentionVariant::Gated,
        "dense" => AttentionVariant::Dense,
        w => return Err(c.error_at(variant.col, &format!("unknown attention variant `{w}`"))),
    };
    Ok(MoeAttentionAttrs {
        heads: a.num("heads", at, c)?,
        experts: a.num("experts", at, c)?,
        k: a.num("k", at, c)?,
        d_head: a.num("d_head", at, c)?,
        pos: pos_encoding(a.take("pos", at, c)?, c)?,
        causal: a.num("causal", at, c)?,
        variant,
        merged: match a.map.remove("merged") {
            Some(v) => Merge::from_name(&v.word)
                .filter(|_| v.args.is_none())
                .ok_or_else(|| c.error_at(v.col, &format!("unknown merge `{}`", v.word)))?,
            None => Merge::None,
        },
    })
}

fn pos_encoding(v: AttrValue, c: &Cursor<'_>) -> Result<PosEncoding, ParseError> {
    match (v.word.as_str(), v.args) {
        ("xl", None) => Ok(PosEncoding::Xl),
        ("rope", Some(mut args)) => {
            let pos = PosEncoding::Rope {
                rotate_fraction: args.num("rotate_fraction", v.col, c)?,
                base: args.num("base", v.col, c)?,
            };
            args.finish(v.col, c)?;
            Ok(pos)
        }
        (w, _) => Err(c.error_at(v.col, &format!("bad position encoding `{w}`"))),
    }
}

/// A position in one line.
struct Cursor<'a> {
    s: &'a str,
    pos: usize,
    line: usize,
}

impl<'a> Cursor<'a> {
    fn col(&self) -> usize {
        self.s[..self.pos].chars().count() + 1
    }

    fn error_at(&self, col: usize, message: &str) -> ParseError {
        ParseError {
            line: self.line,
            col,
            message: message.to_string(),
        }
    }

    fn error(&self, message: &str) -> ParseError {
        self.error_at(self.col(), message)
    }

    fn skip_ws(&mut self) {
        let rest = &self.s[self.pos..];
        self.pos += rest.len() - rest.trim_start().len();
    }

    fn rest(&mut self) -> &'a str {
        let rest = self.s[self.pos..]
            .strip_prefix(' ')
            .unwrap_or(&self.s[self.pos..]);
        self.pos = self.s.len();
        rest
    }

    fn peek_is(&mut self, tok: &str) -> bool {
        self.skip_ws();
        self.s[self.pos..].starts_with(tok)
    }

    fn eat(&mut self, tok: &str) -> bool {
        let yes = self.peek_is(tok);
        if yes {
            self.pos += tok.len();
        }
        yes
    }

    fn expect(&mut self, tok: &str) -> Result<(), ParseError> {
        match self.eat(tok) {
            true => Ok(()),
            false => Err(self.error(&format!("expected `{tok}`, found {}", self.found()))),
        }
    }

    fn found(&self) -> String {
        match self.s[self.pos..].chars().next() {
            Some(ch) => format!("`{ch}`"),
            None => "end of line".to_string(),
        }
    }

    fn end(&mut self) -> Result<(), ParseError> {
        self.skip_ws();
        match self.pos == self.s.len() {
            true => Ok(()),
            false => Err(self.error(&format!("unexpected {}", self.found()))),
        }
    }

    /// Eats `word` if it is the next whole word.
    fn eat_word(&mut self, word: &str) -> bool {
        self.skip_ws();
        let rest = &self.s[self.pos..];
        let whole = rest
            .strip_prefix(word)
            .is_some_and(|r| !r.starts_with(is_word_char));
        if whole {
            self.pos += word.len();
        }
        whole
    }

    /// Reads a run of characters other than whitespace and `,[]()=:@#`.
    fn word(&mut self) -> Result<String, ParseError> {
        self.skip_ws();
        let rest = &self.s[self.pos..];
        let len = rest
            .find(|ch: char| !is_word_char(ch))
            .unwrap_or(rest.len());
        if len == 0 {
            return Err(self.error(&format!(
                "expected a name or number, found {}",
                self.found()
            )));
        }
        self.pos += len;
        Ok(rest[..len].to_string())
    }

    fn value_ref(&mut self) -> Result<(u32, usize), ParseError> {
        self.skip_ws();
        let col = self.col();
        if !self.eat("%") {
            return Err(self.error(&format!("expected a value `%N`, found {}", self.found())));
        }
        let word = self.word()?;
        word.parse()
            .map(|n| (n, col))
            .map_err(|_| self.error_at(col, &format!("bad value `%{word}`")))
    }

    /// A `"..."` string with Rust `{:?}` escapes.
    fn string(&mut self) -> Result<String, ParseError> {
        self.skip_ws();
        if !self.s[self.pos..].starts_with('"') {
            return Err(self.error(&format!("expected a string, found {}", self.found())));
        }
        let start = self.col();
        let mut out = String::new();
        let mut chars = self.s[self.pos + 1..].char_indices();
        while let Some((i, ch)) = chars.next() {
            match ch {
                '"' => {
                    self.pos += i + 2;
                    return Ok(out);
                }
                '\\' => out.push(
                    unescape(&mut chars)
                        .ok_or_else(|| self.error_at(start, "bad escape in string"))?,
                ),
                ch => out.push(ch),
            }
        }
        Err(self.error_at(start, "unterminated string"))
    }

    /// A derived weight's recipe: `scale_inputs("w", "g")`, `shift_bias("w", "s", "b")` or
    /// `fill(1.0, 72)`.
    fn recipe(&mut self) -> Result<Recipe, ParseError> {
        self.skip_ws();
        let col = self.col();
        let kind = self.word()?;
        self.expect("(")?;
        let recipe = match kind.as_str() {
            "scale_inputs" => {
                let weight = self.string()?;
                self.expect(",")?;
                let gain = self.string()?;
                Recipe::ScaleInputs { weight, gain }
            }
            "shift_bias" => {
                let weight = self.string()?;
                self.expect(",")?;
                let shift = self.string()?;
                self.expect(",")?;
                let bias = self.string()?;
                Recipe::ShiftBias {
                    weight,
                    shift,
                    bias,
                }
            }
            "fill" => {
                let (vcol, value) = (self.col(), self.word()?);
                let value = value
                    .parse()
                    .map_err(|_| self.error_at(vcol, &format!("bad fill value `{value}`")))?;
                self.expect(",")?;
                let (lcol, len) = (self.col(), self.word()?);
                let len = len
                    .parse()
                    .map_err(|_| self.error_at(lcol, &format!("bad fill length `{len}`")))?;
                Recipe::Fill { value, len }
            }
            "concat_rows" => {
                let mut parts = vec![self.string()?];
                while self.eat(",") {
                    parts.push(self.string()?);
                }
                Recipe::ConcatRows { parts }
            }
            other => {
                let msg = format!(
                    "unknown recipe `{other}` (expected scale_inputs, shift_bias, fill or \
                     concat_rows)"
                );
                return Err(self.error_at(col, &msg));
            }
        };
        self.expect(")")?;
        Ok(recipe)
    }

    /// `?` (unknown) or `dtype[dims]`.
    fn fact(&mut self) -> Result<Option<Fact>, ParseError> {
        if self.eat("?") {
            return Ok(None);
        }
        let col = self.col();
        let dtype = match self.word()?.as_str() {
            "f32" => DType::F32,
            "f16" => DType::F16,
            "bf16" => DType::BF16,
            "i64" => DType::I64,
            other => return Err(self.error_at(col, &format!("unknown dtype `{other}`"))),
        };
        self.expect("[")?;
        let mut shape = Vec::new();
        if !self.eat("]") {
            shape.push(self.dim()?);
            while self.eat(",") {
                shape.push(self.dim()?);
            }
            self.expect("]")?;
        }
        Ok(Some(Fact { dtype, shape }))
    }

    fn dim(&mut self) -> Result<Dim, ParseError> {
        let word = self.word()?;
        match word.chars().all(|ch| ch.is_ascii_digit()) {
            true => word
                .parse()
                .map(Dim::Known)
                .map_err(|_| self.error(&format!("bad dim `{word}`"))),
            false => Ok(Dim::Sym(word)),
        }
    }

    /// `open key=value, ... close`.
    fn attrs(&mut self, open: &str, close: &str) -> Result<Attrs, ParseError> {
        self.expect(open)?;
        let mut attrs = Attrs::default();
        if self.eat(close) {
            return Ok(attrs);
        }
        loop {
            let key_col = self.col();
            let key = self.word()?;
            self.expect("=")?;
            let value = self.attr_value()?;
            if attrs.map.insert(key.clone(), value).is_some() {
                return Err(self.error_at(key_col, &format!("attribute `{key}` given twice")));
            }
            if self.eat(close) {
                return Ok(attrs);
            }
            self.expect(",")?;
        }
    }

    fn attr_value(&mut self) -> Result<AttrValue, ParseError> {
        self.skip_ws();
        let col = self.col();
        let word = self.word()?;
        let args = if self.s[self.pos..].starts_with('(') {
            Some(self.attrs("(", ")")?)
        } else {
            None
        };
        Ok(AttrValue { word, args, col })
    }
}

fn is_word_char(ch: char) -> bool {
    !ch.is_whitespace() && !",[]()=:@#%\"".contains(ch)
}

/// The character after a backslash (Rust `{:?}` escapes).
fn unescape(chars: &mut std::str::CharIndices<'_>) -> Option<char> {
    match chars.next()?.1 {
        'n' => Some('\n'),
        't' => Some('\t'),
        'r' => Some('\r'),
        '0' => Some('\0'),
        c @ ('\\' | '"' | '\'') => Some(c),
        'u' => {
            let mut hex = String::new();
            if chars.next()?.1 != '{' {
                return None;
            }
            for (_, ch) in chars.by_ref() {
                if ch == '}' {
                    return u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32);
                }
                hex.push(ch);
            }
            None
        }
        _ => None,
    }
}
