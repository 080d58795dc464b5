//! An [`Index`] as bytes, from the child process that made it to the
//! server, and checked whole on arrival: the child parsed a hostile image,
//! so what it sends is not trusted either (every range in bounds, the tree
//! a tree).

use std::sync::OnceLock;

use backhand::compression::Compressor;
use backhand::{DataSize, Fragment};

use super::index::Index;
use super::{FileData, Node};

const COMPRESSORS: [Compressor; 7] = [
    Compressor::Uncompressed,
    Compressor::Gzip,
    Compressor::Lzma,
    Compressor::Lzo,
    Compressor::Xz,
    Compressor::Lz4,
    Compressor::Zstd,
];

#[derive(Default)]
struct Out(Vec<u8>);

impl Out {
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn size(&mut self, d: &DataSize) {
        self.u32(d.size() | u32::from(d.uncompressed()) << 31);
    }
}

struct In<'a>(&'a [u8]);

impl In<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or("the index is cut short")?;
        self.0 = rest;
        Ok(*head)
    }
    fn u32(&mut self) -> Result<u32, String> {
        self.take::<4>().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Result<u64, String> {
        self.take::<8>().map(u64::from_le_bytes)
    }
    /// A count of items of at least `each` bytes that the rest can hold.
    fn count(&mut self, each: usize) -> Result<usize, String> {
        let n = usize::try_from(self.u64()?).map_err(|_| "a bad count")?;
        if n.saturating_mul(each) > self.0.len() {
            return Err("a count beyond the index".into());
        }
        Ok(n)
    }
    fn size(&mut self) -> Result<DataSize, String> {
        let v = self.u32()?;
        let size = v & !(1 << 31);
        if size >= 1 << 24 {
            return Err("a block larger than any block".into());
        }
        Ok(DataSize::new(size, v >> 31 == 1))
    }
}

pub(super) fn encode(x: &Index) -> Vec<u8> {
    let mut o = Out::default();
    o.u32(x.block_size);
    let c = COMPRESSORS.iter().position(|c| *c == x.compressor);
    o.u32(c.unwrap_or(usize::MAX) as u32);
    o.u64(x.fragments.len() as u64);
    for f in &x.fragments {
        o.u64(f.start);
        o.size(&f.size);
    }
    o.u64(x.nodes.len() as u64);
    for n in &x.nodes {
        for v in [n.name.0, n.name.1, n.mode, n.uid, n.gid, n.mtime, n.nlink] {
            o.u32(v);
        }
        o.u64(n.size);
        o.u32(n.data.0);
        o.u32(n.data.1);
    }
    o.u64(x.names.len() as u64);
    o.0.extend_from_slice(&x.names);
    o.u64(x.children.len() as u64);
    for c in &x.children {
        o.u32(*c);
    }
    o.u64(x.files.len() as u64);
    for f in &x.files {
        o.u64(f.blocks_start);
        o.u32(f.frag_index);
        o.u32(f.block_offset);
        o.u64(f.blocks.len() as u64);
        for b in f.blocks.iter() {
            o.size(b);
        }
    }
    o.0
}

pub(super) fn decode(bytes: &[u8]) -> Result<Index, String> {
    let mut i = In(bytes);
    let block_size = i.u32()?;
    if !block_size.is_power_of_two() || !(4096..=1 << 20).contains(&block_size) {
        return Err(format!("block size {block_size}"));
    }
    let compressor = *COMPRESSORS
        .get(i.u32()? as usize)
        .ok_or("an unknown compressor")?;
    let mut fragments = Vec::new();
    for _ in 0..i.count(12)? {
        let start = i.u64()?;
        fragments.push(Fragment::new(start, i.size()?, 0));
    }
    let mut nodes = Vec::new();
    for _ in 0..i.count(44)? {
        let mut v = [0u32; 7];
        for x in &mut v {
            *x = i.u32()?;
        }
        let size = i.u64()?;
        let data = (i.u32()?, i.u32()?);
        nodes.push(Node {
            name: (v[0], v[1]),
            mode: v[2],
            uid: v[3],
            gid: v[4],
            mtime: v[5],
            nlink: v[6],
            size,
            data,
        });
    }
    let n = i.count(1)?;
    let names = i.0[..n].to_vec();
    i.0 = &i.0[n..];
    let mut children = Vec::new();
    for _ in 0..i.count(4)? {
        children.push(i.u32()?);
    }
    let mut files = Vec::new();
    for _ in 0..i.count(24)? {
        let blocks_start = i.u64()?;
        let frag_index = i.u32()?;
        let block_offset = i.u32()?;
        let mut blocks = Vec::new();
        for _ in 0..i.count(4)? {
            blocks.push(i.size()?);
        }
        files.push(FileData {
            blocks_start,
            frag_index,
            block_offset,
            blocks: blocks.into(),
            starts: OnceLock::new(),
        });
    }
    if !i.0.is_empty() {
        return Err("bytes after the index".into());
    }
    let x = Index {
        block_size,
        compressor,
        fragments,
        nodes,
        names,
        children,
        files,
    };
    check(&x)?;
    Ok(x)
}

/// Every range in bounds, and the tree a tree: the root a directory, and
/// every other node the child of one directory listed before it.
fn check(x: &Index) -> Result<(), String> {
    let bad = |what: &str| Err(format!("a bad index ({what})"));
    let within = |(at, len): (u32, u32), total: usize| {
        (at as usize)
            .checked_add(len as usize)
            .is_some_and(|end| end <= total)
    };
    if x.nodes.is_empty() || x.nodes[0].mode & libc::S_IFMT != libc::S_IFDIR {
        return bad("no root directory");
    }
    let mut parent_seen = vec![false; x.nodes.len()];
    for (i, n) in x.nodes.iter().enumerate() {
        if !within(n.name, x.names.len()) {
            return bad("a name");
        }
        match n.mode & libc::S_IFMT {
            libc::S_IFDIR => {
                if !within(n.data, x.children.len()) {
                    return bad("a directory's children");
                }
                let (at, len) = (n.data.0 as usize, n.data.1 as usize);
                for &c in &x.children[at..at + len] {
                    let c = c as usize;
                    if c <= i || c >= x.nodes.len() || parent_seen[c] {
                        return bad("a child");
                    }
                    parent_seen[c] = true;
                }
            }
            libc::S_IFREG => {
                if n.data.0 as usize >= x.files.len() {
                    return bad("a file's blocks");
                }
            }
            libc::S_IFLNK => {
                if !within(n.data, x.names.len()) {
                    return bad("a symlink's target");
                }
            }
            libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO | libc::S_IFSOCK => {}
            _ => return bad("a node's type"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: (u32, u32), mode: u32, data: (u32, u32)) -> Node {
        Node {
            name,
            mode,
            uid: 0,
            gid: 0,
            mtime: 0,
            size: 3,
            nlink: 1,
            data,
        }
    }

    /// `/` holding `d/` (holding `f`) and `l -> f`.
    fn sample() -> Index {
        Index {
            block_size: 4096,
            compressor: Compressor::Gzip,
            fragments: vec![Fragment::new(96, DataSize::new(40, false), 0)],
            nodes: vec![
                node((0, 0), libc::S_IFDIR | 0o755, (0, 2)),
                node((0, 1), libc::S_IFDIR | 0o755, (2, 1)),
                node((1, 1), libc::S_IFLNK | 0o777, (2, 1)),
                node((2, 1), libc::S_IFREG | 0o644, (0, 0)),
            ],
            names: b"dlf".to_vec(),
            children: vec![1, 2, 3],
            files: vec![FileData {
                blocks_start: 96,
                frag_index: 0,
                block_offset: 0,
                blocks: vec![DataSize::new(4096, true)].into(),
                starts: OnceLock::new(),
            }],
        }
    }

    #[test]
    fn an_index_comes_back_as_it_was_sent() {
        let x = decode(&encode(&sample())).unwrap();
        assert_eq!(x.names, b"dlf");
        assert_eq!(x.children, [1, 2, 3]);
        assert_eq!(x.nodes.len(), 4);
        assert_eq!(x.nodes[2].data, (2, 1));
        assert_eq!(x.files[0].blocks[0].size(), 4096);
        assert!(x.files[0].blocks[0].uncompressed());
        assert_eq!(x.fragments[0].start, 96);
        assert_eq!(x.compressor, Compressor::Gzip);
    }

    #[test]
    fn what_is_not_a_tree_or_out_of_bounds_is_refused() {
        let refused = |change: fn(&mut Index)| {
            let mut x = sample();
            change(&mut x);
            assert!(decode(&encode(&x)).is_err());
        };
        refused(|x| x.children[2] = 0); // the root as a child: a cycle
        refused(|x| x.children[2] = 1); // a directory inside itself
        refused(|x| x.children[1] = 1); // two parents
        refused(|x| x.children[0] = 9); // no such node
        refused(|x| x.nodes[3].name = (2, 5)); // a name past the names
        refused(|x| x.nodes[2].data = (u32::MAX, 2)); // a target past them
        refused(|x| x.nodes[3].data = (1, 0)); // no such file
        refused(|x| x.nodes[0].mode = libc::S_IFREG); // a file as the root
        refused(|x| x.block_size = 3000);
    }

    #[test]
    fn damaged_bytes_are_an_error_never_a_panic() {
        let good = encode(&sample());
        for at in 0..good.len() {
            for v in [0u8, 1, 0x7f, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[at] = v;
                let _ = decode(&bad);
            }
            let _ = decode(&good[..at]);
        }
    }
}
