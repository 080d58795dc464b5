//! Each FUSE request, answered with the union's operations.

use super::nodes::Handle;
use super::*;

/// Answers a request that makes or finds a name.
fn reply_entry(reply: ReplyEntry, res: io::Result<FileAttr>) {
    match res {
        Ok(attr) => reply.entry(&ttl(&attr), &attr, Generation(0)),
        Err(e) => reply.error(err(e)),
    }
}

fn reply_xattr(reply: ReplyXattr, size: u32, data: &[u8]) {
    if size == 0 {
        reply.size(data.len() as u32);
    } else if data.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(data);
    }
}

impl Filesystem for UnionFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // Serving now, in the process that stays: the mount table is
        // followed from here on (if the caller has not started that).
        self.stack.watch_mounts();
        let _ = config.set_max_readahead(1 << 20);
        // Passthrough (reads and writes straight to the layer's file) and
        // the writeback cache exclude each other: decided here, before the
        // reply, by whether the kernel offers it and burrowfs may use it.
        self.passthrough = self.want_passthrough
            && config
                .add_capabilities(fuser::InitFlags::FUSE_PASSTHROUGH)
                .is_ok()
            && config.set_max_stack_depth(1).is_ok();
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_PARALLEL_DIROPS);
        // A symlink's target never changes (a new one is a new inode), so
        // the kernel may keep it: /bin, /lib and /sbin are read once.
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_CACHE_SYMLINKS);
        if !self.passthrough {
            let _ = config.add_capabilities(fuser::InitFlags::FUSE_WRITEBACK_CACHE);
            // burrowfs clears set-user-ID on writes and truncates itself, so
            // the kernel need not ask for security.capability before every
            // write (it remembers a file has none: SB_NOSEC).
            let _ = config.add_capabilities(fuser::InitFlags::FUSE_HANDLE_KILLPRIV_V2);
        }
        let _ = config.add_capabilities(
            fuser::InitFlags::FUSE_DO_READDIRPLUS | fuser::InitFlags::FUSE_READDIRPLUS_AUTO,
        );
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        // (Every answer is sent after the lock is let go: the kernel's next
        // request, sent the moment it has this answer, must not find the
        // lock still held by a worker on another CPU and sleep on it.)
        let res = {
            let mut st = self.lock();
            let res = self.entry_attr(&mut st, parent.0, name);
            if let Ok(attr) = &res {
                st.looked_up(attr.ino.0);
            }
            res
        };
        match res {
            Ok(attr) => reply.entry(&ttl(&attr), &attr, Generation(0)),
            // A negative entry: the kernel remembers the name is absent
            // (every change to it comes through this mount).
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                reply.entry(&TTL, &negative_attr(), Generation(0))
            }
            Err(e) => reply.error(err(e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let res = self.handle_attr(&mut self.lock(), ino.0, fh);
        match res {
            Ok(attr) => reply.attr(&ttl(&attr), &attr),
            Err(e) => reply.error(err(e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut st = self.lock();
        let mut res = self.do_setattr(&mut st, ino.0, mode, uid, gid, size, atime, mtime, fh);
        // The kernel leaves clearing set-user-ID on a truncate to burrowfs
        // (FUSE_HANDLE_KILLPRIV_V2), but fuser does not pass on whether the
        // caller may keep it (FATTR_KILL_SUIDGID): burrowfs clears it on
        // every truncate, also where a caller with CAP_FSETID would keep it.
        if let Ok(attr) = &res {
            let perm = u32::from(attr.perm);
            if size.is_some() && without_suidgid(perm) != perm & 0o7777 {
                res = self.do_setattr(
                    &mut st,
                    ino.0,
                    Some(without_suidgid(perm)),
                    None,
                    None,
                    None,
                    None,
                    None,
                    fh,
                );
            }
        }
        drop(st);
        match res {
            Ok(attr) => reply.attr(&ttl(&attr), &attr),
            Err(e) => reply.error(err(e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let res = self
            .xattr_target(&mut self.lock(), ino.0)
            .and_then(|at| at.read_link());
        match res {
            Ok(target) => reply.data(target.as_os_str().as_encoded_bytes()),
            Err(e) => reply.error(err(e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT == libc::S_IFCHR && rdev == 0 {
            // 0/0 is the whiteout device: it cannot be a file of the union.
            return reply.error(Errno::EPERM);
        }
        let mut st = self.lock();
        let build = |dir: &Dir, name: &OsStr| {
            let kind = SFlag::from_bits_truncate(mode & libc::S_IFMT);
            dir.mknod(name, kind, mode & 0o7777, rdev as u64)
        };
        let res = self.create_object(req, &mut st, parent.0, name, true, build);
        drop(st);
        reply_entry(reply, res);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let mut st = self.lock();
        let build = |dir: &Dir, name: &OsStr| {
            dir.mkdir(name, mode & 0o7777)?;
            // (mkdir(2) leaves out set-user-ID and set-group-ID.)
            dir.place(name)?.hold_made()?.chmod(mode & 0o7777)
        };
        let res = self.create_object(req, &mut st, parent.0, name, true, build);
        drop(st);
        reply_entry(reply, res);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let res = self.remove(&mut self.lock(), parent.0, name, false);
        match res {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let res = self.remove(&mut self.lock(), parent.0, name, true);
        match res {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let mut st = self.lock();
        let build = |dir: &Dir, name: &OsStr| dir.symlink(target, name);
        let res = self.create_object(req, &mut st, parent.0, link_name, true, build);
        drop(st);
        reply_entry(reply, res);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let res = self.do_rename(
            &mut self.lock(),
            (parent.0, name),
            (newparent.0, newname),
            flags,
        );
        match res {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let mut st = self.lock();
        let res = st.path(ino.0).and_then(|rel| {
            let src = self.copy_up(&mut st, &rel)?;
            self.create_object(req, &mut st, newparent.0, newname, false, |dir, name| {
                src.dir.hard_link(&src.name, dir, name)
            })
        });
        drop(st);
        reply_entry(reply, res);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if self.no_open() {
            // From now on the kernel opens and closes files by itself: a
            // read names the node, and its file is opened here once.
            return reply.error(Errno::ENOSYS);
        }
        let mut st = self.lock();
        let mut tries = 0;
        match self.open_file(&mut st, ino.0, flags.0) {
            Ok(mut file) => {
                let backing = loop {
                    match self.backing_for(&mut st, ino.0, &file, |f| reply.open_backing(f)) {
                        Ok(b) => break b,
                        // The kernel drops a closed file's backing at once
                        // but tells this server later (RELEASE comes in the
                        // background): give that release a moment.
                        Err(Errno::EBUSY) if tries < 100 => {
                            tries += 1;
                            drop(st);
                            std::thread::sleep(Duration::from_millis(1));
                            st = self.lock();
                            file = match self.open_file(&mut st, ino.0, flags.0) {
                                Ok(f) => f,
                                Err(e) => return reply.error(err(e)),
                            };
                        }
                        Err(e) => return reply.error(e),
                    }
                };
                let fh = self
                    .handles()
                    .add(Handle::File(std::sync::Arc::new(file), ino.0));
                self.note_handle(&mut st, fh, backing.as_ref());
                drop(st);
                match backing {
                    Some(b) => {
                        reply.opened_passthrough(FileHandle(fh), FopenFlags::FOPEN_NOFLUSH, &b)
                    }
                    // Contents change only through this mount, so the page
                    // cache stays valid from one open to the next.
                    None => reply.opened(
                        FileHandle(fh),
                        FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_NOFLUSH,
                    ),
                }
            }
            Err(e) => reply.error(err(e)),
        }
    }

    fn read(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let file = match self.io_file(ino.0, fh, false) {
            Ok(f) => f,
            Err(e) => return reply.error(e),
        };
        if let (Some(dev), Ok(f)) = (self.session.dev.get(), file.os()) {
            if spliced_read::read(dev, req.unique().0, f, offset, size) {
                // Answered. fuser, not knowing, answers again as `reply`
                // is dropped, and the kernel refuses that: no such request.
                return;
            }
        }
        thread_local! {
            // One buffer per worker, reused: a fresh megabyte per request
            // would cost an mmap and its page faults every time.
            static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        BUF.with_borrow_mut(|buf| {
            if buf.len() < size as usize {
                buf.resize(size as usize, 0);
            }
            let buf = &mut buf[..size as usize];
            let mut filled = 0;
            while filled < buf.len() {
                match file.read_at(&mut buf[filled..], offset + filled as u64) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return reply.error(err(e)),
                }
            }
            reply.data(&buf[..filled]);
        });
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        // The writer may not keep set-user-ID (FUSE_HANDLE_KILLPRIV_V2):
        // burrowfs writes with CAP_FSETID, so it clears the bits itself.
        let kill = write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID);
        let held = match self.io_file(ino.0, fh, true) {
            Ok(f) => f,
            Err(e) => return reply.error(e),
        };
        let file = match held.os() {
            Ok(f) => f,
            Err(e) => return reply.error(err(e)),
        };
        let turn = self.write_turns[ino.0 as usize % 16]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if kill {
            let cleared = match self.stack.override_of_file(file) {
                // The bits are the override's: cleared there.
                Some(o) => {
                    use xattr::FileExt;
                    let keep = without_suidgid(o.perm);
                    if keep == o.perm {
                        Ok(false)
                    } else {
                        let value = o.changed(None, None, Some(keep)).encode();
                        file.set_xattr(crate::override_stat::XATTR, value.as_bytes())
                            .map(|()| true)
                    }
                }
                None => file.metadata().and_then(|m| {
                    let keep = without_suidgid(m.mode());
                    if keep == m.mode() & 0o7777 {
                        return Ok(false);
                    }
                    file.set_permissions(std::fs::Permissions::from_mode(keep))
                        .map(|()| true)
                }),
            };
            match cleared {
                // The kernel still has the old mode: drop its attributes.
                Ok(true) => {
                    if let Some(n) = self.session.notifier.get() {
                        let _ = n.inval_inode(ino, -1, 0);
                    }
                }
                Ok(false) => {}
                Err(e) => return reply.error(err(e)),
            }
        }
        let res = file.write_all_at(data, offset);
        drop(turn);
        match res {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(err(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Nothing to do at a close (locks are the kernel's): ENOSYS tells
        // the kernel not to send FLUSH again.
        reply.error(Errno::ENOSYS);
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        // Once the kernel holds no reference, nothing has the file open: a
        // pinned file of an unlinked node can go. (Held under the state's
        // lock: a lookup in between would hand the node out again.)
        let mut st = self.lock();
        if !st.forgotten(ino.0, nlookup) {
            return;
        }
        let file = self.node_files().remove(ino.0);
        drop(st);
        drop(file);
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let handle = self.handles().map.remove(&fh.0);
        if self.passthrough {
            self.drop_handle_io(&mut self.lock(), ino.0, fh.0);
        }
        reply.ok();
        // The file closes here, outside every lock.
        drop(handle);
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Any descriptor of the file syncs it.
        let file = match self.io_file(ino.0, fh, false) {
            Ok(f) => f,
            Err(e) => return reply.error(e),
        };
        // (An image's file has nothing to sync.)
        let res = match (file.os(), datasync) {
            (Err(_), _) => Ok(()),
            (Ok(f), true) => f.sync_data(),
            (Ok(f), false) => f.sync_all(),
        };
        match res {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let listed = self.list_dir(&mut self.lock(), ino.0);
        match listed {
            Ok(list) => {
                let fh = self.handles().add(Handle::Dir(std::sync::Arc::new(list)));
                reply.opened(FileHandle(fh), FopenFlags::empty());
            }
            Err(e) => reply.error(err(e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let Some(list) = self.handles().dir(fh.0) else {
            return reply.error(Errno::EBADF);
        };
        for (i, item) in list.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(item.node), (i + 1) as u64, item.kind, &item.name) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: fuser::ReplyDirectoryPlus,
    ) {
        let Some(list) = self.handles().dir(fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let mut st = self.lock();
        // "." and ".." come first: the directory's own attributes only for them.
        let dir_attr = (offset < 2)
            .then(|| self.node_attr(&mut st, ino.0).ok())
            .flatten();
        for (i, item) in list.iter().enumerate().skip(offset as usize) {
            // The attributes a lookup would give, sent along with the name.
            let attr = match item.name.as_encoded_bytes() {
                b"." | b".." => dir_attr.map(|a| FileAttr {
                    ino: INodeNo(item.node),
                    ..a
                }),
                // The listing is as of OPENDIR: since then the name may
                // have gone or come to mean another file. Each entry sent
                // here becomes a dentry, so only what the name means now
                // may go out (an old node would stand for a removed file,
                // whose I/O then fails, and hide the name's new file).
                _ => match st.by_name(ino.0, &item.name) {
                    Some(now) if now == item.node => item
                        .attr
                        .or_else(|| self.entry_attr(&mut st, ino.0, &item.name).ok()),
                    _ => self.entry_attr(&mut st, ino.0, &item.name).ok(),
                },
            };
            let Some(attr) = attr else { continue };
            if reply.add(
                INodeNo(attr.ino.0),
                (i + 1) as u64,
                &item.name,
                &ttl(&attr),
                &attr,
                Generation(0),
            ) {
                break;
            }
            // The kernel takes a reference for each entry but "." and "..".
            if !matches!(item.name.as_encoded_bytes(), b"." | b"..") {
                st.looked_up(attr.ino.0);
            }
        }
        drop(st);
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        let handle = self.handles().map.remove(&fh.0);
        reply.ok();
        drop(handle);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let dir = match &self.upper {
            Some(u) => u.root(),
            None => self.stack.layer_root(0),
        };
        match dir.statvfs() {
            Ok(s) => reply.statfs(
                s.blocks(),
                s.blocks_free(),
                s.blocks_available(),
                s.files(),
                s.files_free(),
                s.block_size() as u32,
                s.name_max() as u32,
                s.fragment_size() as u32,
            ),
            Err(e) => reply.error(err(nix_err(e))),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        if is_private_xattr(name) {
            return reply.error(Errno::EPERM);
        }
        let name = self.stored_name(name);
        let mut st = self.lock();
        let res = st
            .path(ino.0)
            .and_then(|rel| self.copy_up(&mut st, &rel))
            .and_then(|at| at.set_xattr(&name, value, flags));
        drop(st);
        match res {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        if is_private_xattr(name) {
            return reply.error(Errno::NO_XATTR);
        }
        let stored = self.stored_name(name);
        let res = self.xattr_target(&mut self.lock(), ino.0).and_then(|at| {
            // A recorded one, else (a host's label, say) what is on disk.
            match at.get_xattr(&stored)? {
                None if stored != name => at.get_xattr(name),
                found => Ok(found),
            }
        });
        match res {
            Ok(Some(value)) => reply_xattr(reply, size, &value),
            Ok(None) => reply.error(Errno::NO_XATTR),
            Err(e) => reply.error(err(e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let res = self
            .xattr_target(&mut self.lock(), ino.0)
            .and_then(|at| at.list_xattrs());
        match res {
            Ok(names) => {
                let presenting = self.stack.presents_override_stat();
                let mut shown: Vec<&OsStr> = Vec::new();
                for n in &names {
                    let n = match crate::override_stat::recorded_for(n) {
                        Some(original) if presenting => original,
                        _ if is_private_xattr(n) => continue,
                        _ => n.as_os_str(),
                    };
                    if !shown.contains(&n) {
                        shown.push(n);
                    }
                }
                let mut data = Vec::new();
                for n in shown {
                    data.extend_from_slice(n.as_encoded_bytes());
                    data.push(0);
                }
                reply_xattr(reply, size, &data);
            }
            Err(e) => reply.error(err(e)),
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        if is_private_xattr(name) {
            return reply.error(Errno::NO_XATTR);
        }
        let stored = self.stored_name(name);
        let mut st = self.lock();
        let mut which = stored.clone();
        let res = st
            .path(ino.0)
            .and_then(|rel| {
                let e = self.stack.lookup(&rel)?;
                let place = self.place_of(&e, &rel)?;
                if place.get_xattr(&stored)?.is_none() {
                    // Not recorded: what is on disk under its own name.
                    which = std::borrow::Cow::Borrowed(name);
                    if stored == name || place.get_xattr(name)?.is_none() {
                        return Err(os_err(libc::ENODATA));
                    }
                }
                self.copy_up(&mut st, &rel)
            })
            .and_then(|at| at.remove_xattr(&which));
        drop(st);
        match res {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _flags: i32, // O_APPEND is the kernel's to apply (writeback cache)
        reply: ReplyCreate,
    ) {
        let mut st = self.lock();
        let mut opened: Option<File> = None;
        let build = |dir: &Dir, name: &OsStr| {
            let f = dir.open_file(
                name,
                OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL,
                mode & 0o7777,
            )?;
            // The mode is applied as given (the kernel already masked it).
            f.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))?;
            opened = Some(f);
            Ok(())
        };
        match self.create_object(req, &mut st, parent.0, name, true, build) {
            Ok(attr) => {
                let file = LayerFile::from(opened.expect("created file"));
                if self.no_open() {
                    // Handle 0, as for every open: the new file becomes
                    // the node's own.
                    let closing =
                        self.node_files()
                            .insert(attr.ino.0, std::sync::Arc::new(file), true, true);
                    drop(st);
                    drop(closing);
                    let flags = FopenFlags::FOPEN_NOFLUSH | FopenFlags::FOPEN_KEEP_CACHE;
                    return reply.created(&TTL, &attr, Generation(0), FileHandle(0), flags);
                }
                // A new inode: nothing else has it open.
                let backing = self
                    .backing_for(&mut st, attr.ino.0, &file, |f| reply.open_backing(f))
                    .unwrap_or(None);
                let fh = self
                    .handles()
                    .add(Handle::File(std::sync::Arc::new(file), attr.ino.0));
                self.note_handle(&mut st, fh, backing.as_ref());
                drop(st);
                let flags = FopenFlags::FOPEN_NOFLUSH;
                match backing {
                    Some(b) => reply.created_passthrough(
                        &TTL,
                        &attr,
                        Generation(0),
                        FileHandle(fh),
                        flags,
                        &b,
                    ),
                    None => reply.created(
                        &TTL,
                        &attr,
                        Generation(0),
                        FileHandle(fh),
                        flags | FopenFlags::FOPEN_KEEP_CACHE,
                    ),
                }
            }
            Err(e) => reply.error(err(e)),
        }
    }
}

/// Whether xattr `name` is burrowfs' own: overlayfs' markers, the
/// override of owners and modes, and burrow's records of xattrs. The
/// sandbox can neither see nor set them, also where they are not
/// presented (a later mount may present them).
fn is_private_xattr(name: &OsStr) -> bool {
    upper::is_overlay_xattr(name)
        || crate::override_stat::is_override_xattr(name)
        || crate::override_stat::is_burrow_xattr(name)
}

impl UnionFs {
    /// Where xattr `name` is kept: when presenting what layers record
    /// (`--image`), an xattr the unprivileged writer cannot set on disk
    /// (`security.capability`, `trusted.*`) is kept as burrow's record of
    /// it; otherwise under its own name.
    fn stored_name<'a>(&self, name: &'a OsStr) -> std::borrow::Cow<'a, OsStr> {
        if self.stack.presents_override_stat() {
            if let Some(r) = crate::override_stat::recorded_name(name) {
                return std::borrow::Cow::Owned(r);
            }
        }
        std::borrow::Cow::Borrowed(name)
    }
}
