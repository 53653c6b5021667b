package klrl.run;

import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.channels.OverlappingFileLockException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import klrl.util.UserError;

/**
 * An exclusive lock on OUTPUT/.lock for as long as a trainer writes there: a second trainer pointed
 * at the same folder (another process, or another trainer in this one) refuses to start instead of
 * interleaving metrics and checkpoints. The operating system drops the lock when the process dies,
 * so a killed run never leaves a stale one behind.
 */
public final class OutputLock implements AutoCloseable {
    private final FileChannel channel;
    private final FileLock lock;

    private OutputLock(FileChannel channel, FileLock lock) {
        this.channel = channel;
        this.lock = lock;
    }

    public static OutputLock acquire(Path outputDir) throws IOException {
        Path file = outputDir.resolve(".lock");
        FileChannel ch = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.WRITE);
        FileLock l;
        try {
            l = ch.tryLock();
        } catch (OverlappingFileLockException e) {
            l = null;
        }
        if (l == null) {
            ch.close();
            throw new UserError(outputDir + " is in use by another trainer (it holds " + file
                    + "); give another output_dir, or wait for that run to end");
        }
        return new OutputLock(ch, l);
    }

    @Override
    public void close() throws IOException {
        lock.release();
        channel.close();
    }
}
