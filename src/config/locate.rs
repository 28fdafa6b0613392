//! Maps a config path such as `routes[2].upstream` to the line and column where it is
//! written, so that semantic errors found after deserialization can still be reported as
//! `FILE:LINE:COL: message`. Uses yaml-rust2's marked event parser (serde_yaml has no
//! spans).

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// One step of a path into the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A path into the document, e.g. `[Key("routes"), Index(2), Key("upstream")]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Path(pub Vec<Seg>);

impl Path {
    pub fn root() -> Self {
        Path(Vec::new())
    }
    pub fn key(&self, k: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Key(k.to_string()));
        p
    }
    pub fn idx(&self, i: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Index(i));
        p
    }
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

#[derive(Debug)]
enum Node {
    Scalar(Pos),
    Map(Pos, Vec<(String, Node)>),
    Seq(Pos, Vec<Node>),
}

/// 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl Node {
    fn pos(&self) -> Pos {
        match self {
            Node::Scalar(p) | Node::Map(p, _) | Node::Seq(p, _) => *p,
        }
    }
}

/// The positions of every node of a YAML document.
#[derive(Debug)]
pub struct Locator {
    root: Option<Node>,
}

#[derive(Default)]
struct Builder {
    stack: Vec<Node>,
    // For maps: the pending key (Some) waiting for its value.
    keys: Vec<Option<String>>,
    root: Option<Node>,
}

impl Builder {
    fn push_value(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Node::Seq(_, items)) => items.push(node),
            Some(Node::Map(_, entries)) => {
                let pending = self.keys.last_mut();
                match pending {
                    Some(slot @ None) => {
                        // This node is a key; keys are scalars in config files.
                        let name = match &node {
                            Node::Scalar(_) => String::new(),
                            _ => String::from("?"),
                        };
                        *slot = Some(name);
                    }
                    Some(slot @ Some(_)) => {
                        let k = slot.take().unwrap_or_default();
                        entries.push((k, node));
                    }
                    None => {}
                }
            }
            Some(Node::Scalar(_)) => {}
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Pos {
            line: mark.line(),
            col: mark.col() + 1,
        };
        match ev {
            Event::Scalar(value, ..) => {
                // A scalar in key position names the key.
                if let (Some(Node::Map(map_pos, entries)), Some(slot @ None)) =
                    (self.stack.last_mut(), self.keys.last_mut())
                {
                    // A block mapping is located at its first key.
                    if entries.is_empty() {
                        *map_pos = pos;
                    }
                    *slot = Some(value);
                    return;
                }
                self.push_value(Node::Scalar(pos));
            }
            Event::Alias(_) => self.push_value(Node::Scalar(pos)),
            Event::SequenceStart(..) => {
                self.stack.push(Node::Seq(pos, Vec::new()));
                self.keys.push(None);
            }
            Event::MappingStart(..) => {
                self.stack.push(Node::Map(pos, Vec::new()));
                self.keys.push(None);
            }
            Event::SequenceEnd | Event::MappingEnd => {
                self.keys.pop();
                if let Some(node) = self.stack.pop() {
                    self.push_value(node);
                }
            }
            _ => {}
        }
    }
}

impl Locator {
    /// Parse `text`; a document that does not parse yields a locator that knows nothing
    /// (serde_yaml reports syntax errors with their own position).
    pub fn new(text: &str) -> Self {
        let mut b = Builder::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut b, false).is_err() {
            return Locator { root: None };
        }
        Locator { root: b.root }
    }

    /// The position of the deepest node along `path` that exists (the value for a key).
    pub fn find(&self, path: &Path) -> Pos {
        let mut best = Pos { line: 1, col: 1 };
        let Some(mut node) = self.root.as_ref() else {
            return best;
        };
        best = node.pos();
        for seg in &path.0 {
            let next = match (node, seg) {
                (Node::Map(_, entries), Seg::Key(k)) => {
                    entries.iter().find(|(name, _)| name == k).map(|(_, v)| v)
                }
                (Node::Seq(_, items), Seg::Index(i)) => items.get(*i),
                _ => None,
            };
            match next {
                Some(n) => {
                    node = n;
                    best = n.pos();
                }
                None => break,
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "server:\n  threads: 2\nroutes:\n  - { path: /v1/messages, upstream: nope }\n  - path: /v1/models\n    upstream: other\n";

    #[test]
    fn finds_nested_values() {
        let l = Locator::new(DOC);
        let p = Path::root().key("server").key("threads");
        assert_eq!(l.find(&p), Pos { line: 2, col: 12 });
        let p = Path::root().key("routes").idx(0).key("upstream");
        assert_eq!(l.find(&p), Pos { line: 4, col: 37 });
        let p = Path::root().key("routes").idx(1).key("upstream");
        assert_eq!(l.find(&p), Pos { line: 6, col: 15 });
    }

    #[test]
    fn missing_tail_falls_back_to_parent() {
        let l = Locator::new(DOC);
        let p = Path::root().key("routes").idx(1).key("methods");
        assert_eq!(l.find(&p), Pos { line: 5, col: 5 });
    }

    #[test]
    fn display() {
        let p = Path::root().key("routes").idx(1).key("methods");
        assert_eq!(p.to_string(), "routes[1].methods");
    }

    #[test]
    fn broken_yaml_is_harmless() {
        let l = Locator::new("a: [\n");
        assert_eq!(l.find(&Path::root().key("a")), Pos { line: 1, col: 1 });
    }
}
