"""A backport to the 2.62 Flink job server of apache/beam#39191: bounded state for
splittable DoFns that checkpoint themselves (apache/beam#27648).

    Maven Central ─ beam-runners-java-fn-execution, beam-runners-flink-1.19 (2.62.0, sources)
        └─ three classes, each edit below applied to its exact text (an edit that does not
           match exactly once fails the install)
            └─ javac --release 11 against the job server's libs ─▶ <flink home>/patch/*.jar,
               first on the job server's and the cluster's class path

Why: the portable Flink runner keeps each residual of an SDF's self-checkpoint
(our Kafka reader checkpoints itself after every poll) in keyed state under a
new ValueState named after that residual's timer, and never clears it, so every
Flink checkpoint is larger than the one before, idle or not (+134 KB per 10-s
checkpoint measured here with four partitions). Upstream's fix, which this
follows: all residuals of a key and window in one MapState keyed by timer id,
each entry removed when its timer fires and the residual is processed again.
A job server of a Beam release with apache/beam#39191 needs none of this.
"""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

from devservers._process import DevServerError, run_logged

PATCH_NAME = "beam-flink-sdf-residuals"
_HANDLER = "org/apache/beam/runners/fnexecution/control/BundleCheckpointHandlers.java"
_OPERATOR = "org/apache/beam/runners/flink/translation/wrappers/streaming/ExecutableStageDoFnOperator.java"
_BATCH = "org/apache/beam/runners/flink/translation/functions/FlinkExecutableStageFunction.java"
_SOURCES = {_HANDLER: "beam-runners-java-fn-execution", _OPERATOR: "beam-runners-flink-{flink_minor}",
            _BATCH: "beam-runners-flink-{flink_minor}"}
_QUALIFIED = "org.apache.beam.runners.fnexecution.control.BundleCheckpointHandlers.StateAndTimerBundleCheckpointHandler"

# (file, the text as 2.62 has it, what replaces it)
EDITS = [
    (_HANDLER,
     "import org.apache.beam.runners.core.StateNamespaces;\n",
     "import org.apache.beam.runners.core.StateNamespaces;\n"
     "import org.apache.beam.runners.core.StateTag;\n"
     "import org.apache.beam.sdk.coders.StringUtf8Coder;\n"
     "import org.apache.beam.sdk.state.MapState;\n"),
    (_HANDLER,
     '    public static final String SDF_PREFIX = "sdf_checkpoint";\n',
     '    public static final String SDF_PREFIX = "sdf_checkpoint";\n'
     '    public static final String RESIDUALS = SDF_PREFIX + "_residuals";\n\n'
     "    /** Every residual of a key and window, by its timer id: one state, however many checkpoints. */\n"
     "    public static <T> StateTag<MapState<String, WindowedValue<T>>> residualsTag(\n"
     "        Coder<WindowedValue<T>> coder) {\n"
     "      return StateTags.map(RESIDUALS, StringUtf8Coder.of(), coder);\n"
     "    }\n"),
    (_HANDLER,
     "                .state(stateNamespace, StateTags.value(tag, residualCoder))\n"
     "                .write(\n",
     "                .state(stateNamespace, residualsTag(residualCoder))\n"
     "                .put(\n"
     "                    tag,\n"),
    # a compile-time annotation from spotbugs, which the job server does not ship
    (_OPERATOR, "import edu.umd.cs.findbugs.annotations.SuppressFBWarnings;\n", ""),
    (_OPERATOR, '@SuppressFBWarnings("SE_TRANSIENT_FIELD_NOT_RESTORED")\n', ""),
    (_OPERATOR,
     "        WindowedValue stateValue =\n"
     "            keyedStateInternals.state(namespace, StateTags.value(timerId, residualCoder)).read();\n"
     "        processElement(stateValue);\n",
     "        org.apache.beam.sdk.state.MapState<String, WindowedValue<InputT>> residuals =\n"
     "            keyedStateInternals.state(\n"
     "                namespace, StateAndTimerBundleCheckpointHandler.residualsTag(residualCoder));\n"
     "        WindowedValue<InputT> stateValue = residuals.get(timerId).read();\n"
     "        residuals.remove(timerId);\n"
     "        if (stateValue != null) {\n"
     "          processElement(stateValue);\n"
     "        }\n"),
    (_BATCH,
     "            WindowedValue stateValue =\n"
     "                sdfStateInternals\n"
     "                    .state(timer.getNamespace(), StateTags.value(timer.getTimerId(), inputCoder))\n"
     "                    .read();\n"
     "\n"
     "            residuals.add(stateValue);\n",
     "            org.apache.beam.sdk.state.MapState<String, WindowedValue<InputT>> held =\n"
     "                sdfStateInternals.state(\n"
     f"                    timer.getNamespace(), {_QUALIFIED}.residualsTag(inputCoder));\n"
     "            WindowedValue<InputT> stateValue = held.get(timer.getTimerId()).read();\n"
     "            held.remove(timer.getTimerId());\n"
     "            if (stateValue != null) {\n"
     "              residuals.add(stateValue);\n"
     "            }\n"),
]


def apply_edits(sources: dict[str, str]) -> dict[str, str]:
    """The sources with every edit applied; DevServerError when an edit's text is
    not in its file exactly once (another Beam version: look again, do not guess)."""
    patched = dict(sources)
    for path, old, new in EDITS:
        found = patched[path].count(old)
        if found != 1:
            raise DevServerError(f"flink patch: {path} holds the text to replace {found} times, not once:\n{old}")
        patched[path] = patched[path].replace(old, new)
    return patched


def build(home: Path, libs: Path, beam_version: str, flink_minor: str) -> Path:
    """Fetch the sources, edit, compile against `libs`, and jar the classes; returns the jar."""
    work = home / "patch.partial"
    shutil.rmtree(work, ignore_errors=True)
    (work / "src").mkdir(parents=True)
    sources = {}
    for path, artifact in _SOURCES.items():
        artifact = artifact.format(flink_minor=flink_minor)
        jar = work / f"{artifact}-{beam_version}-sources.jar"
        if not jar.exists():
            run_logged("flink-patch", ["mvn", "-B", "-q", "dependency:copy",
                                       f"-Dartifact=org.apache.beam:{artifact}:{beam_version}:jar:sources",
                                       f"-DoutputDirectory={work}"])
        with zipfile.ZipFile(jar) as archive:
            sources[path] = archive.read(path).decode("utf-8")
    for path, text in apply_edits(sources).items():
        (work / "src" / path).parent.mkdir(parents=True, exist_ok=True)
        (work / "src" / path).write_text(text, encoding="utf-8")
    classes = work / "classes"
    compiled = subprocess.run(
        ["javac", "-nowarn", "--release", "11", "-proc:none", "-cp", f"{libs}/*", "-d", str(classes),
         *(str(work / "src" / path) for path in sources)], capture_output=True, text=True, timeout=600)
    if compiled.returncode != 0:
        raise DevServerError(f"flink patch: javac failed:\n{compiled.stderr[-4000:]}")
    jar = work / f"{PATCH_NAME}.jar"
    with zipfile.ZipFile(jar, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(classes.rglob("*.class")):
            archive.write(path, path.relative_to(classes).as_posix())
    target = home / "patch"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir()
    final = target / jar.name
    jar.rename(final)
    shutil.rmtree(work, ignore_errors=True)
    return final
