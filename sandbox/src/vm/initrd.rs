//! The guest's initramfs, written as a `newc` cpio archive into memory:
//! burrow's static guest init as /init, the kernel modules it loads and
//! the order to load them in.

use std::io::Write;

/// A cpio (`newc`) archive being written.
pub struct Cpio<W: Write> {
    out: W,
    ino: u32,
}

impl<W: Write> Cpio<W> {
    pub fn new(out: W) -> Self {
        Cpio { out, ino: 1 }
    }

    fn entry(
        &mut self,
        name: &str,
        mode: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> std::io::Result<()> {
        let namesize = name.len() + 1;
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino,
            mode,
            0, // uid
            0, // gid
            1, // nlink
            0, // mtime
            data.len(),
            0, // devmajor
            0, // devminor
            rdev.0,
            rdev.1,
            namesize,
            0, // check
        );
        self.ino += 1;
        self.out.write_all(header.as_bytes())?;
        self.out.write_all(name.as_bytes())?;
        self.out.write_all(&[0])?;
        self.pad(header.len() + namesize)?;
        self.out.write_all(data)?;
        self.pad(data.len())
    }

    fn pad(&mut self, len: usize) -> std::io::Result<()> {
        let n = (4 - len % 4) % 4;
        self.out.write_all(&[0u8; 3][..n])
    }

    pub fn dir(&mut self, name: &str) -> std::io::Result<()> {
        self.entry(name, libc::S_IFDIR | 0o755, (0, 0), &[])
    }

    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> std::io::Result<()> {
        self.entry(name, libc::S_IFREG | perm, (0, 0), data)
    }

    pub fn char_dev(&mut self, name: &str, major: u32, minor: u32) -> std::io::Result<()> {
        self.entry(name, libc::S_IFCHR | 0o600, (major, minor), &[])
    }

    /// Writes the trailer; returns the writer.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.entry("TRAILER!!!", 0, (0, 0), &[])?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_aligned_and_readable_back() {
        let mut c = Cpio::new(Vec::new());
        c.dir("dev").unwrap();
        c.char_dev("dev/console", 5, 1).unwrap();
        c.file("init", 0o755, b"#!x").unwrap();
        let out = c.finish().unwrap();
        assert_eq!(out.len() % 4, 0);
        // Walk the archive as the kernel does.
        let mut at = 0;
        let mut names = Vec::new();
        while at < out.len() {
            let h = std::str::from_utf8(&out[at..at + 110]).unwrap();
            assert_eq!(&h[..6], "070701");
            let field = |i: usize| usize::from_str_radix(&h[6 + 8 * i..14 + 8 * i], 16).unwrap();
            let (size, namesize) = (field(6), field(11));
            let name = std::str::from_utf8(&out[at + 110..at + 110 + namesize - 1]).unwrap();
            names.push((name.to_string(), field(1), field(9), field(10), size));
            at = (at + 110 + namesize).next_multiple_of(4);
            at = (at + size).next_multiple_of(4);
        }
        assert_eq!(
            names,
            vec![
                ("dev".into(), 0o40755, 0, 0, 0),
                ("dev/console".into(), 0o20600, 5, 1, 0),
                ("init".into(), 0o100755, 0, 0, 3),
                ("TRAILER!!!".into(), 0, 0, 0, 0),
            ]
        );
    }
}
