//! The union's changes: copy-up, new objects, removal with whiteouts,
//! renames, opens and attribute changes, each in terms of the layers
//! (reached through [`crate::layer_dir`]) and the node table.

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::Path;
use std::time::UNIX_EPOCH;

use fuser::{FileAttr, FileHandle, FileType, RenameFlags, Request, TimeOrNow};
use nix::fcntl::OFlag;

use super::nodes::{DirItem, Key, State};
use super::*;
use crate::layer_dir::{Dir, Object, Place};
use crate::layer_file::LayerFile;
use crate::layers::Kind;
use crate::override_stat;

impl UnionFs {
    /// Makes sure `rel` is in the upper layer, copying it (and its parents)
    /// up when it is only in a lower one. Returns where it is there.
    pub(super) fn copy_up(&self, st: &mut State, rel: &Path) -> io::Result<Place> {
        self.copy_up_with(st, rel, false)
    }

    /// [`UnionFs::copy_up`], of a file's attributes only when `emptied`
    /// (it is about to be truncated to nothing, as kernel overlayfs copies
    /// for O_TRUNC): so a file this process may not read can still be
    /// replaced, as the shadow tools replace their backup files.
    fn copy_up_with(&self, st: &mut State, rel: &Path, emptied: bool) -> io::Result<Place> {
        let upper = self.upper()?;
        let mut e = self.stack.lookup(rel)?;
        if emptied && e.kind == Kind::File {
            e.meta.size = 0;
        }
        if self.is_upper(&e) {
            return upper.place(rel);
        }
        if let Some(parent) = rel.parent() {
            if !parent.as_os_str().is_empty() {
                self.copy_up(st, parent)?;
            }
        }
        let at = upper.place(rel)?;
        let src = self.place_of(&e, rel)?;
        // A file whose override says how it shows is copied as it is on
        // disk, and its override with it (a device node's stand-in stays
        // an empty file).
        let meta = match self.stack.override_of(&src.dir, &src.name) {
            Some(_) => {
                let mut real = src.stat()?;
                if emptied && real.kind() == Kind::File {
                    real.size = 0;
                }
                real
            }
            None => e.meta,
        };
        upper.copy_up(&src, &meta, &at)?;
        if e.kind == Kind::Dir {
            st.layers_gen += 1;
        }
        let copied = at.stat()?;
        let node = match (rel.parent(), rel.file_name()) {
            (Some(parent), Some(name)) if e.meta.nlink > 1 && e.kind != Kind::Dir => self
                .node_of_path(st, parent)
                .map(|p| Key::Name(Box::new((p, name.to_owned())))),
            _ => Some(Self::identity(&e.meta)),
        }
        .and_then(|key| st.by_identity(&key));
        if let Some(node) = node {
            st.alias(node, Self::identity(&copied));
            // The lower file is no longer the node's data.
            let lower = self.node_files().remove(node);
            drop(lower);
        }
        Ok(at)
    }

    /// [`UnionFs::copy_up`] for a node: resolved one step from its
    /// parent's cached layers, so a node already in the upper layer costs
    /// one stat instead of a walk from the root.
    pub(super) fn copy_up_node(&self, st: &mut State, node: u64) -> io::Result<Place> {
        self.copy_up_node_with(st, node, false)
    }

    /// [`UnionFs::copy_up_node`], emptied as [`UnionFs::copy_up_with`].
    fn copy_up_node_with(&self, st: &mut State, node: u64, emptied: bool) -> io::Result<Place> {
        let (rel, e) = self.resolve(st, node)?;
        if self.is_upper(&e) {
            return self.upper()?.place(&rel);
        }
        self.copy_up_with(st, &rel, emptied)
    }

    /// Upper directory `rel`, which merges `layers`: copied up first when
    /// only a lower layer has it.
    pub(super) fn upper_dir(
        &self,
        st: &mut State,
        rel: &Path,
        layers: &[usize],
    ) -> io::Result<Dir> {
        let upper = self.upper()?;
        if layers.first().copied() != self.stack.upper() && !rel.as_os_str().is_empty() {
            self.copy_up(st, rel)?;
        }
        upper.dir(rel)
    }

    /// The node already known for directory `rel`, if any.
    pub(super) fn node_of_path(&self, st: &State, rel: &Path) -> Option<u64> {
        let e = self.stack.lookup(rel).ok()?;
        st.by_identity(&Self::identity(&e.meta))
    }

    /// Copies `rel` and, for a directory, everything visible below it.
    pub(super) fn copy_up_tree(&self, st: &mut State, rel: &Path) -> io::Result<()> {
        // A lower directory that holds the upper layer itself (the host's
        // / under an upper in $HOME) would copy into itself without end.
        if let (Some(upper), Ok(e)) = (&self.upper, self.stack.lookup(rel)) {
            if !self.is_upper(&e)
                && upper
                    .path()
                    .starts_with(self.stack.layer_dir(e.layer).join(rel))
            {
                return Err(os_err(libc::EXDEV));
            }
        }
        self.copy_up(st, rel)?;
        if self.stack.lookup(rel)?.kind == Kind::Dir {
            for child in self.stack.read_dir(rel)? {
                self.copy_up_tree(st, &rel.join(&child.name))?;
            }
        }
        Ok(())
    }

    /// Owner for a new object in `parent_upper`, as the kernel would give it.
    pub(super) fn new_owner(&self, req: &Request, parent_upper: &Dir) -> Option<(u32, u32, bool)> {
        if !self.as_root {
            return None;
        }
        let pm = parent_upper.stat_self().ok()?;
        let sgid = pm.mode & libc::S_ISGID != 0;
        let uid = self.ids.stored_uid(req.uid()).ok()?;
        let gid = if sgid {
            pm.gid
        } else {
            self.ids.stored_gid(req.gid()).ok()?
        };
        Some((uid, gid, sgid))
    }

    /// Creates a new object named `name` in `parent` with `build` (given
    /// the directory and the name to make it at), given to the requester
    /// (unless it is a new name of an existing file). As in kernel
    /// overlayfs, it is made in place where nothing is there in the upper
    /// layer, and in the work directory where it must replace a whiteout
    /// in one step. (Making every new file in the one work directory also
    /// had ext4 search that directory's block group for a free inode each
    /// time, among inodes just freed there.)
    pub(super) fn create_object(
        &self,
        req: &Request,
        st: &mut State,
        parent: u64,
        name: &OsStr,
        new_inode: bool,
        build: impl FnOnce(&Dir, &OsStr) -> io::Result<()>,
    ) -> io::Result<FileAttr> {
        let (parent_rel, layers) = self.dir_layers(st, parent)?;
        // The parent's directories, opened once for the whole creation.
        let mut opened = self.stack.open_dirs(&layers, &parent_rel)?;
        match self.stack.entry_in(&opened, &parent_rel, name) {
            Ok(_) => return Err(os_err(libc::EEXIST)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let upper = self.upper()?;
        let upper_idx = self.stack.upper();
        let parent_upper = match opened.first() {
            Some((l, _)) if Some(*l) == upper_idx => opened.swap_remove(0).1,
            _ => self.upper_dir(st, &parent_rel, &layers)?,
        };
        drop(opened);
        let target = Place {
            dir: parent_upper,
            name: name.to_os_string(),
        };
        let in_place = match target.stat() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => true,
            Err(e) => return Err(e),
            Ok(_) => false, // only a whiteout can be there
        };
        let in_work = match in_place {
            true => None,
            false => Some(upper.work().place(&upper.temp())?),
        };
        let tmp = in_work.as_ref().unwrap_or(&target);
        build(&tmp.dir, &tmp.name)?;
        let res = self.finish_new(req, tmp, &target, in_place, new_inode);
        if res.is_err() {
            let _ = tmp.dir.remove_any(&tmp.name);
        }
        res?;
        // The new entry, as a lookup now finds it: in the upper layer alone.
        let layer = upper_idx.ok_or_else(|| os_err(libc::EROFS))?;
        // As it shows (a hard link's override included).
        let meta = self
            .stack
            .owned(layer, &target.dir, &target.name, target.stat()?);
        let kind = meta.kind();
        let e = Entry {
            layer,
            kind,
            meta,
            dir_layers: if kind == Kind::Dir {
                vec![layer]
            } else {
                Vec::new()
            },
        };
        let node = st.node_for(self.key(layer, &e.meta, parent, name), parent, name);
        // Every caller sends the kernel this entry.
        st.looked_up(node);
        Ok(self.shown(union_attr(node, &e)))
    }

    pub(super) fn finish_new(
        &self,
        req: &Request,
        tmp: &Place,
        target: &Place,
        in_place: bool,
        new_inode: bool,
    ) -> io::Result<()> {
        let upper = self.upper()?;
        // Owner and marks go to the object made, held: not to whatever is
        // put at its name meanwhile.
        // (A new name of an existing file has its other links.)
        let made = if new_inode {
            tmp.hold_made()?
        } else {
            tmp.hold()?
        };
        let meta = made.stat()?;
        let is_dir = meta.kind() == Kind::Dir;
        let owner = new_inode
            .then(|| self.new_owner(req, &target.dir))
            .flatten();
        if let Some((uid, gid, sgid)) = owner {
            made.chown(Some(uid), Some(gid))?;
            if sgid && is_dir {
                made.chmod((meta.mode | libc::S_ISGID) & 0o7777)?;
            }
        }
        if in_place {
            return Ok(());
        }
        // The new object replaces a whiteout, and a directory must not show
        // what the lower layers had.
        if is_dir {
            made.set_xattr(OsStr::new("user.overlay.opaque"), b"y", 0)?;
        }
        upper.replace(&tmp.name, target)
    }

    /// Removes `name` from `parent`, leaving a whiteout when a lower layer
    /// still has it.
    pub(super) fn remove(
        &self,
        st: &mut State,
        parent: u64,
        name: &OsStr,
        dir: bool,
    ) -> io::Result<()> {
        let (parent_rel, layers) = self.dir_layers(st, parent)?;
        let rel = parent_rel.join(name);
        // The parent's directories, opened once for the whole removal.
        let mut opened = self.stack.open_dirs(&layers, &parent_rel)?;
        let e = self.stack.entry_in(&opened, &parent_rel, name)?;
        match (dir, e.kind == Kind::Dir) {
            (true, false) => return Err(os_err(libc::ENOTDIR)),
            (false, true) => return Err(os_err(libc::EISDIR)),
            _ => {}
        }
        if dir && !self.stack.read_dir_in(&e.dir_layers, &rel)?.is_empty() {
            return Err(os_err(libc::ENOTEMPTY));
        }
        let upper = self.upper()?;
        if let Some((_, d)) = opened.iter().find(|(l, _)| *l == e.layer) {
            self.keep_open_unnamed(st, parent, name, &e, d);
        }
        let needs_whiteout =
            !self.is_upper(&e) || self.stack.lower_shows(&opened, &parent_rel, name);
        let upper_parent = match opened.first() {
            Some((l, _)) if Some(*l) == self.stack.upper() => opened.swap_remove(0).1,
            _ => self.upper_dir(st, &parent_rel, &layers)?,
        };
        drop(opened);
        let at = Place {
            dir: upper_parent,
            name: name.to_os_string(),
        };
        let mut whited_out = false;
        if self.is_upper(&e) {
            if needs_whiteout {
                // One step: the upper entry leaves for the work directory
                // and a whiteout takes its place, so a crash cannot bring
                // the lower entry back.
                whited_out = upper.replace_with_whiteout(&at)?;
            }
            if !whited_out {
                if dir {
                    // Only whiteouts can be left in it: it is empty in the union.
                    at.dir.remove_any(&at.name)?;
                } else {
                    at.dir.unlink(&at.name)?;
                }
            }
        }
        if needs_whiteout && !whited_out {
            upper.make_whiteout(&at)?;
        }
        if dir || !upper.device_whiteouts() {
            st.layers_gen += 1;
        }
        st.unname(parent, name);
        Ok(())
    }

    pub(super) fn do_rename(
        &self,
        st: &mut State,
        from: (u64, &OsStr),
        to: (u64, &OsStr),
        flags: RenameFlags,
    ) -> io::Result<()> {
        st.layers_gen += 1;
        let src_rel = st.path(from.0)?.join(from.1);
        let dst_rel = st.path(to.0)?.join(to.1);
        let src = self.stack.lookup(&src_rel)?;
        let dst = match self.stack.lookup(&dst_rel) {
            Ok(e) => Some(e),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let exchange = flags.contains(RenameFlags::RENAME_EXCHANGE);
        if flags.contains(RenameFlags::RENAME_NOREPLACE) && dst.is_some() {
            return Err(os_err(libc::EEXIST));
        }
        if exchange && dst.is_none() {
            return Err(os_err(libc::ENOENT));
        }
        // Two names of one upper file (a lower hard link counts as two
        // files, as its copy-up would separate them).
        let same_file = dst.as_ref().is_some_and(|d| {
            self.is_upper(d)
                && self.is_upper(&src)
                && (d.meta.dev, d.meta.ino) == (src.meta.dev, src.meta.ino)
        });
        if src_rel == dst_rel || (same_file && !exchange) {
            // rename(2) between names of one file does nothing and succeeds.
            return Ok(());
        }
        if !exchange {
            if let Some(d) = &dst {
                match (src.kind == Kind::Dir, d.kind == Kind::Dir) {
                    (true, false) => return Err(os_err(libc::ENOTDIR)),
                    (false, true) => return Err(os_err(libc::EISDIR)),
                    (true, true) if !self.stack.read_dir(&dst_rel)?.is_empty() => {
                        return Err(os_err(libc::ENOTEMPTY))
                    }
                    _ => {}
                }
                if let Ok(at) = self.place_of(d, &dst_rel) {
                    self.keep_open_unnamed(st, to.0, to.1, d, &at.dir);
                }
            }
        }
        let upper = self.upper()?;
        // Full copy-up: a directory moves as a complete upper tree (no
        // redirect xattrs), marked opaque at its new place.
        self.copy_up_tree(st, &src_rel)?;
        if let Some(p) = dst_rel.parent().filter(|p| !p.as_os_str().is_empty()) {
            self.copy_up(st, p)?;
        }
        let (src_at, dst_at) = (upper.place(&src_rel)?, upper.place(&dst_rel)?);
        if exchange {
            self.copy_up_tree(st, &dst_rel)?;
            src_at.dir.rename(
                &src_at.name,
                &dst_at.dir,
                &dst_at.name,
                nix::fcntl::RenameFlags::RENAME_EXCHANGE,
            )?;
            for (at, kind) in [
                (&src_at, dst.as_ref().map(|d| d.kind)),
                (&dst_at, Some(src.kind)),
            ] {
                if kind == Some(Kind::Dir) {
                    upper.set_opaque(at)?;
                }
            }
            let tmp_name = OsString::from("\0exchange");
            st.rename_name(from, (0, &tmp_name));
            st.rename_name(to, from);
            st.rename_name((0, &tmp_name), to);
            return Ok(());
        }
        let src_needs_whiteout = self.stack.lower_has(&src_rel);
        if let Ok(m) = dst_at.stat() {
            if m.kind() == Kind::Dir || src.kind == Kind::Dir {
                // An emptied directory (whiteouts only) or a whiteout under
                // a directory: clear it so that rename(2) can land.
                dst_at.dir.remove_any(&dst_at.name)?;
            }
        }
        src_at.dir.rename(
            &src_at.name,
            &dst_at.dir,
            &dst_at.name,
            nix::fcntl::RenameFlags::empty(),
        )?;
        if src.kind == Kind::Dir {
            upper.set_opaque(&dst_at)?;
        }
        if src_needs_whiteout {
            upper.make_whiteout(&src_at)?;
        }
        st.unname(to.0, to.1);
        st.rename_name(from, to);
        Ok(())
    }

    pub(super) fn open_file(&self, st: &mut State, node: u64, flags: i32) -> io::Result<LayerFile> {
        let writes = flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0;
        if let Err(e) = st.path(node) {
            // Unlinked but still open (reopened through /proc/PID/fd):
            // reopen the file an existing handle holds. Writing needs a
            // handle that writes already (so an upper file): a read-only
            // handle may be a lower layer's file, which must never be
            // written.
            use std::os::fd::AsRawFd;
            let writable = |f: &LayerFile| f.access().1;
            // Held (not just its number) while reopened: a release may
            // close the handle meanwhile.
            let held = self
                .handles()
                .file_of_node(node, |f| !writes || writable(f));
            let held = held.ok_or(if writes { os_err(libc::EACCES) } else { e })?;
            let fd = match &*held {
                LayerFile::Os(f) => f.as_raw_fd(),
                // (Never for writing: an image's file is not writable.)
                LayerFile::Image(f) => return Ok(LayerFile::Image(f.clone())),
            };
            return std::fs::OpenOptions::new()
                .read(flags & libc::O_ACCMODE != libc::O_WRONLY)
                .write(flags & libc::O_ACCMODE != libc::O_RDONLY)
                .open(format!("/proc/self/fd/{fd}"))
                .map(LayerFile::from);
        }
        let keep = libc::O_TRUNC | libc::O_SYNC | libc::O_DSYNC | libc::O_NOATIME;
        if !writes {
            let reading = OFlag::O_RDONLY | OFlag::from_bits_truncate(flags & keep);
            if let Some(f) = self.open_in_kept_dir(st, node, reading) {
                return Ok(f);
            }
        }
        let (layer, at) = if writes {
            (None, self.copy_up_node(st, node)?)
        } else if let Some((layer, at)) = self.only_place(st, node)? {
            // Opened as it is, without a stat first: a READ is only ever
            // for a regular file, and O_NOFOLLOW keeps it one.
            (Some(layer), at)
        } else {
            let (rel, e) = self.resolve(st, node)?;
            (Some(e.layer), self.place_of(&e, &rel)?)
        };
        // With the writeback cache the kernel picks every write's offset
        // (O_APPEND included) and may read to fill a partial page, so a
        // file opened for writing is opened for reading too where allowed.
        let write =
            writes && flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0; // O_RDONLY|O_TRUNC truncates on Linux
        let read_asked = flags & libc::O_ACCMODE != libc::O_WRONLY;
        let open = |read: bool| {
            let access = match (read, write) {
                (true, true) => OFlag::O_RDWR,
                (false, true) => OFlag::O_WRONLY,
                _ => OFlag::O_RDONLY,
            };
            at.dir.open_regular(
                &at.name,
                access | OFlag::from_bits_truncate(flags & keep),
                None,
            )
        };
        let opened = match open(true) {
            Err(e) if !read_asked && e.raw_os_error() == Some(libc::EACCES) => open(false),
            other => other,
        }?;
        if let Some(layer) = layer {
            self.keep_dir(st, node, layer, at.dir);
        }
        Ok(opened)
    }

    pub(super) fn set_times(
        at: &Object,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
    ) -> io::Result<()> {
        use nix::sys::time::TimeSpec;
        let spec = |t: Option<TimeOrNow>| match t {
            None => TimeSpec::UTIME_OMIT,
            Some(TimeOrNow::Now) => TimeSpec::UTIME_NOW,
            Some(TimeOrNow::SpecificTime(t)) => match t.duration_since(UNIX_EPOCH) {
                Ok(d) => TimeSpec::from_duration(d),
                Err(e) => {
                    let d = e.duration();
                    let ns = d.subsec_nanos();
                    let secs = -(d.as_secs() as i64) - i64::from(ns > 0);
                    let nsec = if ns > 0 { 1_000_000_000 - ns } else { 0 };
                    TimeSpec::new(secs, nsec as i64)
                }
            },
        };
        at.set_times(&spec(atime), &spec(mtime))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn do_setattr(
        &self,
        st: &mut State,
        node: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        fh: Option<FileHandle>,
    ) -> io::Result<FileAttr> {
        let at = match st.path(node) {
            Ok(_) => Some(self.copy_up_node_with(st, node, size == Some(0))?),
            Err(_) => None, // unlinked: only the open handle is left
        };
        // A nameless file without FUSE opens: only the node's own file is left.
        let orphan = at.is_none() && self.no_open() && fh.is_none_or(|f| f.0 == 0);
        if let Some(size) = size {
            let held = match orphan {
                true => Some(self.writable_orphan(st, node, size)?),
                false => self.held_file(node, fh, at.is_none()),
            };
            match held {
                Some(f) if at.is_none() || f.os().and_then(|f| f.set_len(size)).is_ok() => {
                    f.os()?.set_len(size)?;
                }
                _ => {
                    let at = at.as_ref().ok_or_else(|| os_err(libc::ENOENT))?;
                    at.dir
                        .open_regular(&at.name, OFlag::O_WRONLY, None)?
                        .os()?
                        .set_len(size)?;
                }
            }
        }
        let Some(at) = at else {
            if let (Some(mode), true) = (mode, orphan) {
                // (The set-id bits a truncate clears, too.)
                self.chmod_orphan(st, node, mode & 0o7777)?;
            }
            return self.handle_attr(st, node, fh);
        };
        // Every change to one object, held: never to something put at its
        // name between two of them.
        let object = at.hold()?;
        let uid = uid.map(|u| self.ids.stored_uid(u)).transpose()?;
        let gid = gid.map(|g| self.ids.stored_gid(g)).transpose()?;
        let asked = uid.is_some() || gid.is_some() || mode.is_some();
        if let Some(o) = asked
            .then(|| self.stack.override_of(&at.dir, &at.name))
            .flatten()
        {
            // The override is what the file shows: it is what changes.
            let mut o = o.changed(uid, gid, mode);
            // Set-id bits go with a chown of a non-directory, as chown(2)
            // clears them (root's included).
            let chowned = uid.is_some() || gid.is_some();
            if chowned && mode.is_none() && object.stat()?.kind() != Kind::Dir {
                o.perm = without_suidgid(o.perm);
            }
            let value = o.encode();
            object.set_xattr(OsStr::new(override_stat::XATTR), value.as_bytes(), 0)?;
        } else {
            if uid.is_some() || gid.is_some() {
                object.chown(uid, gid)?;
            }
            if let Some(mode) = mode {
                // Never a symlink's target.
                if object.stat()?.kind() != Kind::Symlink {
                    object.chmod(mode & 0o7777)?;
                }
            }
        }
        if atime.is_some() || mtime.is_some() {
            Self::set_times(&object, atime, mtime)?;
        }
        self.node_attr(st, node)
    }

    /// Mode `mode` for nameless `node`: on its own file, a lower layer's
    /// copied first (never the layer's file itself).
    fn chmod_orphan(&self, st: &mut State, node: u64, mode: u32) -> io::Result<()> {
        use xattr::FileExt;
        let (own, lower) = {
            let files = self.node_files();
            match files.pinned_lower(node) {
                Some(_) => (None, true),
                None => (files.any(node), false),
            }
        };
        let f = match own {
            Some(f) => f,
            None if lower => self.writable_orphan(st, node, u64::MAX)?,
            None => return Ok(()), // nothing kept: not a file, or gone
        };
        let f = f.os()?;
        match self.stack.override_of_file(f) {
            Some(o) => {
                let value = o.changed(None, None, Some(mode)).encode();
                f.set_xattr(override_stat::XATTR, value.as_bytes())
            }
            None => f.set_permissions(std::fs::Permissions::from_mode(mode)),
        }
    }

    /// The open file `fh` names, or (handle 0, no FUSE opens) the node's
    /// own file when `unlinked` (the only way left to it).
    pub(super) fn held_file(
        &self,
        node: u64,
        fh: Option<FileHandle>,
        unlinked: bool,
    ) -> Option<std::sync::Arc<LayerFile>> {
        match fh {
            Some(fh) if fh.0 != 0 => self.handles().file(fh.0).cloned(),
            _ if unlinked => self.node_files().any(node),
            _ => None,
        }
    }

    pub(super) fn handle_attr(
        &self,
        st: &mut State,
        node: u64,
        fh: Option<FileHandle>,
    ) -> io::Result<FileAttr> {
        let held = fh.and_then(|fh| self.handles().file(fh.0).cloned());
        match held {
            Some(f) => self.shown_file(node, &f),
            None => match self.node_attr(st, node) {
                // Unlinked while open: what the open file says (nlink 0),
                // through a handle or the node's kept file (no FUSE opens).
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    let kept = self.handles().file_of_node(node, |_| true);
                    kept.or_else(|| self.node_files().any(node))
                        .and_then(|f| self.shown_file(node, &f).ok())
                        .ok_or(e)
                }
                other => other,
            },
        }
    }

    pub(super) fn list_dir(&self, st: &mut State, node: u64) -> io::Result<Vec<DirItem>> {
        let (rel, layers) = self.dir_layers(st, node)?;
        let parent = st.first_name(node).map_or(ROOT, |(p, _)| p);
        let dir = |node, name: &str| DirItem {
            node,
            kind: FileType::Directory,
            name: OsString::from(name),
            attr: None,
        };
        let mut out = vec![dir(node, "."), dir(parent, "..")];
        for e in self.stack.read_dir_in(&layers, &rel)? {
            let key = if Some(e.layer) != self.stack.upper() && e.kind != Kind::Dir && e.nlink > 1 {
                Key::Name(Box::new((node, e.name.clone())))
            } else {
                Key::Inode(e.dev_ino.0, e.dev_ino.1)
            };
            let ino = st.node_for(key, node, &e.name);
            let attr = (e.kind != Kind::Dir).then(|| self.shown(attr_of(ino, &e.meta)));
            out.push(DirItem {
                node: ino,
                kind: file_type(e.kind),
                name: e.name,
                attr,
            });
        }
        Ok(out)
    }

    /// Where `node`'s file is now, in whichever layer shows it.
    pub(super) fn xattr_target(&self, st: &mut State, node: u64) -> io::Result<Place> {
        let (rel, e) = self.resolve(st, node)?;
        self.place_of(&e, &rel)
    }
}
