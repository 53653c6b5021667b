package klrl.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** When a plain `java -jar` relaunches itself with the launch settings, and with which command line. */
class LauncherTest {
    static final Path JAR = Path.of("/opt/trainer.jar"), MKL = Path.of("/home/u/.cache/klrl/native/libmkl-on-amd.so");
    static final String[] ARGS = {"--kl", "k1", "--kl-in-reward"};

    @Test
    void aPlainJavaJarGetsEverySetting() {
        Launcher.Plan p = Launcher.plan(Map.of(), List.of("-Dfoo=1"), JAR, "/jdk/bin/java", "train", ARGS, () -> MKL);
        assertEquals(List.of("/jdk/bin/java", "-Dfoo=1", "-Xmn32m", "-XX:+UseSerialGC", "-cp", JAR.toString(), "klrl.cli.Main",
                "--kl", "k1", "--kl-in-reward"), p.command());
        assertEquals("1", p.env().get("MALLOC_ARENA_MAX"));
        assertEquals("33554432", p.env().get("MALLOC_MMAP_THRESHOLD_"));
        assertEquals("100000000000", p.env().get("MALLOC_TRIM_THRESHOLD_"));
        assertEquals(MKL.toString(), p.env().get("LD_PRELOAD"));
        assertEquals("1", p.env().get(Launcher.MARK));
    }

    @Test
    void whatScriptsTrainerSetsIsEnoughAndTheUsersChoicesStay() {
        Map<String, String> scripts = Map.of("MALLOC_ARENA_MAX", "1", "MALLOC_MMAP_THRESHOLD_", "33554432", "MALLOC_TRIM_THRESHOLD_", "100000000000",
                "LD_PRELOAD", "/repo/trainer/target/native/libmkl-on-amd.so");
        assertNull(Launcher.plan(scripts, List.of("-Xmn32m", "-XX:+UseSerialGC"), JAR, "java", "train", ARGS, () -> MKL));
        // a user's own allocator value and heap flags are kept; only what is missing is added
        Launcher.Plan p = Launcher.plan(Map.of("MALLOC_ARENA_MAX", "4", "LD_PRELOAD", "/lib/x.so"), List.of("-XX:+UseG1GC"),
                JAR, "java", "eval", ARGS, () -> MKL);
        assertTrue(!p.env().containsKey("MALLOC_ARENA_MAX") && !p.command().contains("-Xmn32m"), p.toString());
        assertEquals(MKL + ":/lib/x.so", p.env().get("LD_PRELOAD"));
        assertEquals(List.of("-XX:+UseSerialGC"), Launcher.plan(Map.of("KLRL_JAVA_OPTS", "-XX:+UseSerialGC"), List.of(), JAR, "java",
                "train", ARGS, () -> null).command().subList(1, 2));
    }

    @Test
    void noRelaunchWhenOptedOutAlreadyRelaunchedFromClassesOrForLightCommands() {
        assertNull(Launcher.plan(Map.of("KLRL_RELAUNCH", "0"), List.of(), JAR, "java", "train", ARGS, () -> MKL));
        assertNull(Launcher.plan(Map.of(Launcher.MARK, "1"), List.of(), JAR, "java", "train", ARGS, () -> MKL));
        assertNull(Launcher.plan(Map.of(), List.of(), null, "java", "train", ARGS, () -> MKL));
        assertNull(Launcher.plan(Map.of(), List.of(), JAR, "java", "verify", ARGS, () -> MKL));
        assertEquals("train", Launcher.command(ARGS, java.util.Set.of("eval", "train")));
        assertEquals("eval", Launcher.command(new String[] {"eval", "--model", "m"}, java.util.Set.of("eval", "train")));
    }
}
