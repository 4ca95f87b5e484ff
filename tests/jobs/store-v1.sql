BEGIN TRANSACTION;
CREATE TABLE epochs (
  job_id TEXT NOT NULL,
  epoch INTEGER NOT NULL,
  step INTEGER NOT NULL,
  lora_file TEXT NOT NULL,
  sample_files TEXT NOT NULL,
  PRIMARY KEY (job_id, epoch)
);
CREATE TABLE files (
  id TEXT PRIMARY KEY,
  job_id TEXT NOT NULL,
  owner TEXT NOT NULL,
  role TEXT NOT NULL,
  path TEXT NOT NULL,
  name TEXT NOT NULL,
  content_type TEXT NOT NULL,
  size INTEGER NOT NULL,
  created_at REAL NOT NULL,
  UNIQUE (job_id, role)
);
CREATE TABLE job_logs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id TEXT NOT NULL,
  ts REAL NOT NULL,
  level TEXT NOT NULL,
  source TEXT NOT NULL,
  message TEXT NOT NULL
);
CREATE TABLE jobs (
  id TEXT PRIMARY KEY,
  seq INTEGER NOT NULL UNIQUE,
  flavour TEXT NOT NULL,
  endpoint TEXT NOT NULL,
  owner TEXT NOT NULL,
  user_id TEXT NOT NULL,
  plan TEXT NOT NULL,
  request TEXT NOT NULL,
  status TEXT NOT NULL,
  priority INTEGER NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  failures INTEGER NOT NULL DEFAULT 0,
  max_retries INTEGER NOT NULL DEFAULT 0,
  reclaims INTEGER NOT NULL DEFAULT 0,
  timeout_s REAL,
  start_deadline REAL,
  heartbeat_at REAL,
  lease_owner TEXT,
  cancel_requested INTEGER NOT NULL DEFAULT 0,
  created_at REAL NOT NULL,
  started_at REAL,
  run_started_at REAL,
  completed_at REAL,
  error TEXT,
  error_type TEXT,
  error_status INTEGER,
  billed TEXT,
  progress REAL NOT NULL DEFAULT 0,
  progress_text TEXT,
  tags TEXT NOT NULL DEFAULT '[]',
  metadata TEXT NOT NULL DEFAULT '{}',
  external_id TEXT,
  base_url TEXT NOT NULL,
  webhook_url TEXT,
  callbacks TEXT NOT NULL DEFAULT '[]',
  outputs TEXT,
  history TEXT NOT NULL DEFAULT '[]'
);
INSERT INTO "jobs" VALUES('fal-job',1,'fal','fal-ai/ltx23-trainer-v2/t2v','o','u','{
  "flavour": "fal",
  "endpoint": "fal-ai/ltx23-trainer-v2/t2v",
  "family": "ltx23",
  "mode": "t2v",
  "dataset": {
    "source_url": "http://data.invalid/clips.zip",
    "expected_count": null,
    "frames": 89,
    "fps": 24,
    "bucket": {
      "width": 768,
      "height": 768
    },
    "area_side": null,
    "auto_scale": false,
    "split_scenes": true,
    "scene_threshold_s": 30.0,
    "audio": {
      "use": null,
      "normalize": true,
      "preserve_pitch": true
    },
    "captions": {
      "trigger_phrase": "",
      "shuffle_tokens": false,
      "keep_tokens": 0,
      "variants": 1
    },
    "flip": false,
    "reference_transform": null
  },
  "lora": {
    "rank": 32,
    "alpha": 32.0,
    "init_from": null
  },
  "optimisation": {
    "steps": 100,
    "learning_rate": 0.0002,
    "scheduler": "linear",
    "warmup_steps": 0,
    "optimizer": "adamw",
    "noise_offset": 0.0,
    "first_frame_p": 0.0,
    "audio_loss_weight": 1.0,
    "batch_size": 1,
    "seed": 42
  },
  "checkpoints": {
    "steps": [
      100
    ],
    "deliver_each": false
  },
  "validation": {
    "prompts": [],
    "negative_prompt": "worst quality, low quality, blurry, out of focus, inconsistent motion, jittery, jerky motion, flickering, distorted, deformed, disfigured, bad anatomy, extra limbs, warped faces, oversaturated, overexposed, underexposed, washed out colors, grainy, noisy, compression artifacts, watermark, text, subtitles, logo, static frame, frozen video, distorted audio, off-sync audio",
    "frames": 89,
    "fps": 24,
    "bucket": {
      "width": 960,
      "height": 960
    },
    "guidance_scale": null,
    "stg_scale": 1.0,
    "lora_strength": 1.0,
    "audio": true,
    "at_steps": []
  },
  "outputs": {
    "preview_reel": false,
    "debug_dataset": false,
    "checkpoint_loras": false
  },
  "price": {
    "amount": 0.6,
    "currency": "USD",
    "billed_units": 100,
    "unit_price": 0.006,
    "formula": "0.006 USD x max(100, 100 steps)",
    "note": ""
  },
  "warnings": []
}','{"body":{"training_data_url":"http://data.invalid/clips.zip","number_of_steps":100},"hint":null}','failed',1,1,0,0,0,NULL,NULL,1.79617320764394092563e+09,NULL,0,1.79617320763452291486e+09,1.79617320764394092563e+09,1.79617320764394092563e+09,1.79617320764477276804e+09,'training_data_url not reachable: HTTP 404','dataset_error',400,'{"amount":0.0}',0.0,NULL,'[]','{}',NULL,'http://x','http://receiver.invalid/hook','[]',NULL,'[]');
INSERT INTO "jobs" VALUES('civitai-job',2,'civitai','civitai','o','u','{
  "flavour": "civitai",
  "endpoint": "civitai",
  "family": "ltx23",
  "mode": "t2v",
  "dataset": {
    "source_url": "https://civitai-delivery-worker-prod.5ac0637cfd0766c97916cefa3764fbdf.r2.cloudflarestorage.com/training-images/4470934/2725414TrainingData.nuB3.zip",
    "expected_count": 4,
    "frames": 89,
    "fps": 24,
    "bucket": null,
    "area_side": 768,
    "auto_scale": true,
    "split_scenes": false,
    "scene_threshold_s": 30.0,
    "audio": {
      "use": null,
      "normalize": true,
      "preserve_pitch": true
    },
    "captions": {
      "trigger_phrase": "",
      "shuffle_tokens": false,
      "keep_tokens": 0,
      "variants": 1
    },
    "flip": false,
    "reference_transform": null
  },
  "lora": {
    "rank": 32,
    "alpha": 32.0,
    "init_from": null
  },
  "optimisation": {
    "steps": 3000,
    "learning_rate": 0.0001,
    "scheduler": "cosine",
    "warmup_steps": 0,
    "optimizer": "adamw8bit",
    "noise_offset": 0.0,
    "first_frame_p": 0.0,
    "audio_loss_weight": 1.0,
    "batch_size": 1,
    "seed": 42
  },
  "checkpoints": {
    "steps": [
      300,
      600,
      900,
      1200,
      1500,
      1800,
      2100,
      2400,
      2700,
      3000
    ],
    "deliver_each": true
  },
  "validation": {
    "prompts": [
      {
        "prompt": "a video of TOK",
        "image_url": null,
        "reference_video_url": null
      },
      {
        "prompt": "TOK moving in a garden",
        "image_url": null,
        "reference_video_url": null
      }
    ],
    "negative_prompt": "worst quality, low quality, blurry, out of focus, inconsistent motion, jittery, jerky motion, flickering, distorted, deformed, disfigured, bad anatomy, extra limbs, warped faces, oversaturated, overexposed, underexposed, washed out colors, grainy, noisy, compression artifacts, watermark, text, subtitles, logo, static frame, frozen video, distorted audio, off-sync audio",
    "frames": 89,
    "fps": 24,
    "bucket": {
      "width": 768,
      "height": 768
    },
    "guidance_scale": null,
    "stg_scale": 1.0,
    "lora_strength": 1.0,
    "audio": true,
    "at_steps": [
      300,
      600,
      900,
      1200,
      1500,
      1800,
      2100,
      2400,
      2700,
      3000
    ]
  },
  "outputs": {
    "preview_reel": false,
    "debug_dataset": false,
    "checkpoint_loras": true
  },
  "price": {
    "amount": 2750.0,
    "currency": "Buzz",
    "billed_units": 2750,
    "unit_price": 0.75,
    "formula": "max(round(3000 steps x 0.75 + 10 epochs x 50), floor 2200)",
    "note": ""
  },
  "warnings": []
}','{"body":{"tags":["training","video"],"steps":[{"$type":"training","priority":"normal","retries":2,"input":{"engine":"ai-toolkit","ecosystem":"ltx23","steps":3000,"lr":0.0001,"trainTextEncoder":false,"lrScheduler":"cosine","optimizerType":"adamw8bit","networkDim":32,"networkAlpha":32,"trainingData":{"type":"zip","sourceUrl":"https://civitai-delivery-worker-prod.5ac0637cfd0766c97916cefa3764fbdf.r2.cloudflarestorage.com/training-images/4470934/2725414TrainingData.nuB3.zip","count":4},"samples":{"prompts":["a video of TOK","TOK moving in a garden"]}}}]},"step":{"$type":"training","name":"0","priority":"normal","retries":0,"timeout":null,"input":{"engine":"ai-toolkit","ecosystem":"ltx23","steps":3000,"lr":0.0001,"trainTextEncoder":false,"lrScheduler":"cosine","optimizerType":"adamw8bit","networkDim":32,"networkAlpha":32,"trainingData":{"type":"zip","sourceUrl":"https://civitai-delivery-worker-prod.5ac0637cfd0766c97916cefa3764fbdf.r2.cloudflarestorage.com/training-images/4470934/2725414TrainingData.nuB3.zip","count":4},"samples":{"prompts":["a video of TOK","TOK moving in a garden"]}}}}','queued',1,0,0,2,0,NULL,NULL,NULL,NULL,0,1.79617320764505529408e+09,NULL,NULL,NULL,NULL,NULL,NULL,NULL,0.0,NULL,'["a","b"]','{"k":1}','ext-1','http://x',NULL,'[{"url":"http://receiver.invalid/cb","type":["workflow:*"],"detailed":false}]',NULL,'[]');
INSERT INTO "jobs" VALUES('queued-job',3,'fal','fal-ai/ltx23-trainer-v2/t2v','o','u','{
  "flavour": "fal",
  "endpoint": "fal-ai/ltx23-trainer-v2/t2v",
  "family": "ltx23",
  "mode": "t2v",
  "dataset": {
    "source_url": "http://data.invalid/clips.zip",
    "expected_count": null,
    "frames": 89,
    "fps": 24,
    "bucket": {
      "width": 768,
      "height": 768
    },
    "area_side": null,
    "auto_scale": false,
    "split_scenes": true,
    "scene_threshold_s": 30.0,
    "audio": {
      "use": null,
      "normalize": true,
      "preserve_pitch": true
    },
    "captions": {
      "trigger_phrase": "",
      "shuffle_tokens": false,
      "keep_tokens": 0,
      "variants": 1
    },
    "flip": false,
    "reference_transform": null
  },
  "lora": {
    "rank": 32,
    "alpha": 32.0,
    "init_from": null
  },
  "optimisation": {
    "steps": 100,
    "learning_rate": 0.0002,
    "scheduler": "linear",
    "warmup_steps": 0,
    "optimizer": "adamw",
    "noise_offset": 0.0,
    "first_frame_p": 0.0,
    "audio_loss_weight": 1.0,
    "batch_size": 1,
    "seed": 42
  },
  "checkpoints": {
    "steps": [
      100
    ],
    "deliver_each": false
  },
  "validation": {
    "prompts": [],
    "negative_prompt": "worst quality, low quality, blurry, out of focus, inconsistent motion, jittery, jerky motion, flickering, distorted, deformed, disfigured, bad anatomy, extra limbs, warped faces, oversaturated, overexposed, underexposed, washed out colors, grainy, noisy, compression artifacts, watermark, text, subtitles, logo, static frame, frozen video, distorted audio, off-sync audio",
    "frames": 89,
    "fps": 24,
    "bucket": {
      "width": 960,
      "height": 960
    },
    "guidance_scale": null,
    "stg_scale": 1.0,
    "lora_strength": 1.0,
    "audio": true,
    "at_steps": []
  },
  "outputs": {
    "preview_reel": false,
    "debug_dataset": false,
    "checkpoint_loras": false
  },
  "price": {
    "amount": 0.6,
    "currency": "USD",
    "billed_units": 100,
    "unit_price": 0.006,
    "formula": "0.006 USD x max(100, 100 steps)",
    "note": ""
  },
  "warnings": []
}','{"body":{"training_data_url":"http://data.invalid/clips.zip","number_of_steps":100}}','canceled',1,0,0,0,0,NULL,NULL,NULL,NULL,1,1.79617320764561629294e+09,NULL,NULL,1.79617320764608311657e+09,'Request was cancelled','cancelled',NULL,NULL,0.0,NULL,'[]','{}',NULL,'http://x',NULL,'[]',NULL,'[]');
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO "meta" VALUES('schema_version','1');
CREATE TABLE outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id TEXT NOT NULL,
  url TEXT NOT NULL,
  kind TEXT NOT NULL,
  request_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  body BLOB NOT NULL,
  created_at REAL NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_at REAL NOT NULL,
  lease_until REAL,
  delivered_at REAL,
  dead INTEGER NOT NULL DEFAULT 0,
  last_error TEXT
);
INSERT INTO "outbox" VALUES(1,'fal-job','http://receiver.invalid/hook','fal','fal-job','u',X'717565756564',1.79617320764372062676e+09,0,1.79617320764372062676e+09,NULL,NULL,0,NULL);
INSERT INTO "outbox" VALUES(2,'fal-job','http://receiver.invalid/hook','fal','fal-job','u',X'707265706172696E67',1.79617320764449787135e+09,0,1.79617320764449787135e+09,NULL,NULL,0,NULL);
INSERT INTO "outbox" VALUES(3,'fal-job','http://receiver.invalid/hook','fal','fal-job','u',X'6661696C6564',1.79617320764494299892e+09,0,1.79617320764494299892e+09,NULL,NULL,0,NULL);
INSERT INTO "outbox" VALUES(4,'queued-job','http://receiver.invalid/hook','fal','queued-job','u',X'717565756564',1796173207.64584,0,1796173207.64584,NULL,NULL,0,NULL);
INSERT INTO "outbox" VALUES(5,'queued-job','http://receiver.invalid/hook','fal','queued-job','u',X'63616E63656C6564',1.79617320764622688295e+09,0,1.79617320764622688295e+09,NULL,NULL,0,NULL);
CREATE UNIQUE INDEX jobs_external_id ON jobs(owner, external_id) WHERE external_id IS NOT NULL;
CREATE INDEX jobs_queue ON jobs(status, priority, seq);
CREATE INDEX jobs_owner ON jobs(owner, flavour, seq);
CREATE INDEX job_logs_job ON job_logs(job_id, id);
CREATE INDEX outbox_pending ON outbox(job_id, url, id) WHERE delivered_at IS NULL AND dead = 0;
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('outbox',5);
COMMIT;
