// LoopNeRF loop player: plays scene.glb (static mesh + one mesh per loop frame, shown in
// turn by the glb's "loop" animation) endlessly, with orbit controls (drag: orbit,
// right-drag: pan, wheel: zoom). Keys: space = pause / play, r = back to the default
// camera, arrows left / right = one frame back / forward while paused.
// Everything it loads comes from this folder (scene.json, scene.glb, three/), so any
// static file server (python3 -m http.server) serves it.
//
// With ?measure in the URL it draws nothing by itself and exposes
// window.loopnerf.render(view) for tests: one unlit, non-antialiased frame at an exact
// pinhole camera and playback time, read back as RGBA bytes (transparent where no mesh).
import * as THREE from 'three';
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';
import { OrbitControls } from 'three/addons/controls/OrbitControls.js';

const api = (window.loopnerf = { ready: false, error: null });
const status = document.getElementById('status');
const measure = new URLSearchParams(window.location.search).has('measure');

function projection(fx, fy, cx, cy, width, height, near, far) {
  // OpenGL projection of a pinhole camera (pixel centres at +0.5, rows from the top).
  const m = new THREE.Matrix4();
  m.set(
    (2 * fx) / width, 0, 1 - (2 * cx) / width, 0,
    0, (2 * fy) / height, (2 * cy) / height - 1, 0,
    0, 0, -(far + near) / (far - near), (-2 * far * near) / (far - near),
    0, 0, -1, 0,
  );
  return m;
}

function toBase64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

async function main() {
  const config = await (await fetch('scene.json')).json();
  const gltf = await new GLTFLoader().loadAsync(config.glb);
  const scene = new THREE.Scene();
  scene.add(gltf.scene);
  const frames = config.frames;
  const frameNodes = [];
  for (let k = 0; k < frames; k++) frameNodes.push(gltf.scene.getObjectByName('frame_' + String(k).padStart(4, '0')));
  const clip = gltf.animations.find((a) => a.name === 'loop') || gltf.animations[0];
  const mixer = new THREE.AnimationMixer(gltf.scene);
  const action = mixer.clipAction(clip);
  action.setLoop(THREE.LoopRepeat, Infinity);
  action.play();
  const visibleFrame = () => frameNodes.findIndex((n) => n && n.scale.x > 0.5);
  const cam = config.camera;
  const near = cam.near, far = cam.far;
  api.visibleFrame = visibleFrame;
  api.frames = frames;
  api.fps = config.fps;

  if (measure) {
    const renderer = new THREE.WebGLRenderer({ antialias: false, alpha: true, preserveDrawingBuffer: true });
    renderer.setPixelRatio(1);
    renderer.setClearColor(0x000000, 0);
    document.body.appendChild(renderer.domElement);
    const camera = new THREE.PerspectiveCamera();
    camera.matrixAutoUpdate = false;
    const gl = renderer.getContext();
    api.glRenderer = gl.getParameter(gl.RENDERER);
    api.render = (view) => {
      renderer.setSize(view.width, view.height, false);
      camera.matrix.fromArray(view.matrix);
      camera.updateMatrixWorld(true);
      camera.projectionMatrix.copy(projection(view.fx, view.fy, view.cx, view.cy, view.width, view.height, near, far));
      camera.projectionMatrixInverse.copy(camera.projectionMatrix).invert();
      mixer.setTime(view.time);
      renderer.render(scene, camera);
      const px = new Uint8Array(view.width * view.height * 4);
      gl.readPixels(0, 0, view.width, view.height, gl.RGBA, gl.UNSIGNED_BYTE, px);
      return { width: view.width, height: view.height, rgba: toBase64(px), frame: visibleFrame() };
    };
    api.ready = true;
    status.textContent = '';
    return;
  }

  const renderer = new THREE.WebGLRenderer({ antialias: true });
  renderer.setPixelRatio(window.devicePixelRatio);
  renderer.setSize(window.innerWidth, window.innerHeight);
  document.body.appendChild(renderer.domElement);
  const bg = config.background;
  scene.background = new THREE.Color().setRGB(bg[0], bg[1], bg[2], THREE.SRGBColorSpace);
  const fov = THREE.MathUtils.radToDeg(2 * Math.atan((0.5 * cam.height) / cam.fy));
  const camera = new THREE.PerspectiveCamera(fov, window.innerWidth / window.innerHeight, near, far);
  const home = new THREE.Matrix4().fromArray(cam.matrix);
  const controls = new OrbitControls(camera, renderer.domElement);
  const reset = () => {
    home.decompose(camera.position, camera.quaternion, camera.scale);
    controls.target.fromArray(config.target);
    controls.update();
  };
  reset();
  window.addEventListener('resize', () => {
    camera.aspect = window.innerWidth / window.innerHeight;
    camera.updateProjectionMatrix();
    renderer.setSize(window.innerWidth, window.innerHeight);
  });
  let playing = true;
  window.addEventListener('keydown', (e) => {
    if (e.key === ' ') playing = !playing;
    else if (e.key === 'r') reset();
    else if (!playing && (e.key === 'ArrowRight' || e.key === 'ArrowLeft')) {
      const k = (visibleFrame() + (e.key === 'ArrowRight' ? 1 : frames - 1)) % frames;
      mixer.setTime(k / config.fps);
    }
  });
  const clock = new THREE.Clock();
  let shown = 0;
  renderer.setAnimationLoop(() => {
    const dt = clock.getDelta();
    if (playing) mixer.update(dt);
    controls.update();
    renderer.render(scene, camera);
    shown += 1;
    status.textContent = `frame ${visibleFrame() + 1} / ${frames}  ${config.fps} fps  ${playing ? '' : '(paused)'}`;
  });
  api.drawn = () => shown;
  api.time = () => action.time;
  api.ready = true;
}

main().catch((e) => {
  api.error = String((e && e.stack) || e);
  status.textContent = 'error: ' + String(e);
  console.error(e);
});
